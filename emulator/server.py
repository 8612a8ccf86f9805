"""Launch moto's server (moto[server]==5.2.5) with a few patches that make it answer like AWS.

Usage:
    .venv/bin/python emulator/server.py [--host 127.0.0.1] [--port 0]

Binds only to --host; --port 0 picks a free port. Once listening, prints exactly one line to
stdout, ``listening on http://<host>:<port>``, then serves (threaded) until SIGTERM/SIGINT.
Everything else (moto's own prints, werkzeug warnings) goes to stderr; per-request log lines
are off. The app is moto's own (``DomainDispatcherApplication(create_backend_app)``, as in
``moto.server``), so ``/moto-api/...`` (reset, recorder, ...) works as usual; the recorder
writes ``moto_recording`` in the working directory.

Patches (applied in this process only; site-packages is untouched):

a. GetBucketVersioning: moto answers ``<GetBucketVersioningResponse>``; AWS (and the Rust SDK's
   parser) expect ``<VersioningConfiguration xmlns=...>`` with optional ``<Status>`` (absent
   when never set) and optional ``<MfaDelete>`` (moto did not store it; we now do).
b. GetBucketReplication: moto answers every rule with ``Filter: {Prefix: ""}`` and
   ``DeleteMarkerReplication: Disabled`` and drops fields other than ID/Priority/Status/
   Destination. moto stores the PutBucketReplication body as parsed by xmltodict, so we render
   that dict back as ``<ReplicationConfiguration>``: every field comes back as it was put
   (moto only adds Priority 1 / a random ID to rules without them, as before).
c. CloudFormation ``AWS::IAM::Role`` inline ``Policies``: moto stores the document as a Python
   dict, so GetRolePolicy answers a Python repr. ``Role.put_policy`` now stores a dict as JSON
   (like the IAM API path does). The role's AssumeRolePolicyDocument is already JSON in moto.
   On a stack update moto only set Description (and MaxSessionDuration to 3600); now the
   role's inline Policies (added/changed/removed), AssumeRolePolicyDocument and
   MaxSessionDuration are applied too.
d. ``x-amz-expected-bucket-owner``: moto ignores it. For every bucket- and object-level S3
   request carrying the header, if the bucket exists and belongs to another account the answer
   is 403 AccessDenied (HEAD: empty 403), as on AWS.
e. Accounts by access key: moto 5.2.5 maps an access key to an account only if it is a
   20-character key known to some account's IAM (e.g. one minted by sts:AssumeRole); any other
   key acts as 123456789012. A request signed with a 12-digit access key id now acts as that
   account (AWS_ACCESS_KEY_ID=111111111111 -> account 111111111111), unless MOTO_ACCOUNT_ID or
   the x-moto-account-id header says otherwise. Not AWS behaviour: the harness's way to be a
   given account (e.g. the management account) without an AssumeRole first.
f. Deleted stacks stay deleted: moto builds a stack's resources lazily, so DescribeStacks (its
   Outputs) or Describe/ListStackResources on a DELETE_COMPLETE stack re-created the deleted
   resources (e.g. the IAM role, which then blocked creating the stack again). A deleted
   stack now has no Outputs and no resources.
g. The recorder's lines: moto writes each recorded request as two writes (the JSON, then a
   newline) from the request's own thread, so two concurrent requests could land on one line
   (``{...}{...}\n\n``) and the recording no longer parsed. Recording is now serialized by a
   lock. (Test harness only: AWS has no recorder.)
h. Deleting a stack whose role was deleted outside CloudFormation: moto's delete of the
   ``AWS::IAM::Role`` resource raised NoSuchEntity, so DeleteStack failed. CloudFormation's
   resource handler contract has a delete handler answer NotFound for a resource already gone,
   which a stack deletion takes as deleted: the stack reaches DELETE_COMPLETE. The role's delete
   now skips a role that no longer exists.
i. UpdateStack to a template that declares fewer parameters: moto kept the earlier template's
   parameters and failed (HTTP 500, KeyError) on one the new template no longer declares. On
   AWS a stack's parameters are the template's: those it does not declare are dropped. Its
   exports too follow the template: moto registered a stack's exports at CreateStack only, so
   an export an update added was missing from ListExports, and the stack's DeleteStack then
   failed (HTTP 500, KeyError on withdrawing it). An update now withdraws the stack's earlier
   exports and registers the new template's.
j. Object Lock configuration: GetObjectLockConfiguration answered a default retention with
   both ``<Days>`` and ``<Years>``, the one never put as ``0`` (``Days 30`` read back as
   ``Days 30, Years 0``); AWS answers the period that was put, and a default retention holds
   days or years, never both (API Reference, DefaultRetention). PutObjectLockConfiguration
   failed ``InvalidBucket: Bucket needs to be empty`` on a bucket holding objects; AWS sets,
   changes or removes (a configuration without ``Rule``) the default retention of a bucket
   with objects, the default applying to versions written after it (API Reference,
   PutObjectLockConfiguration: Object Lock can even be enabled on existing buckets). Both now
   answer like AWS; versioning is still required, as on AWS.
"""

import argparse
import functools
import json
import logging
import os
import re
import signal
import sys
import threading
from typing import Any
from xml.sax.saxutils import escape

import xmltodict
from werkzeug.serving import make_server

from moto.cloudformation.models import CloudFormationBackend, Stack
from moto.cloudformation.parsing import ResourceMap
from moto.core.responses import BaseResponse
from moto.iam.models import Role, iam_backends
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.core.responses import ActionResult
from moto.s3.exceptions import (
    InvalidBucketState,
    ReplicationConfigurationNotFoundError,
    S3AccessDeniedError,
)
from moto.s3.models import S3Backend, s3_backends
from moto.s3.responses import S3Response
from moto.utilities.utils import get_partition

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
XML_HEADERS = {"content-type": "application/xml"}


# --- a. GetBucketVersioning ----------------------------------------------------------------
def patch_get_bucket_versioning() -> None:
    """Answer <VersioningConfiguration> with optional Status/MfaDelete, like AWS."""

    def get_bucket_versioning(self: S3Response) -> Any:
        bucket = self.backend.get_bucket(self.bucket_name)
        body = ""
        if bucket.versioning_status:
            body += f"<Status>{escape(bucket.versioning_status)}</Status>"
        mfa_delete = getattr(bucket, "mfa_delete", None)
        if mfa_delete:
            body += f"<MfaDelete>{escape(mfa_delete)}</MfaDelete>"
        xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n'
               f'<VersioningConfiguration xmlns="{S3_NS}">{body}</VersioningConfiguration>')
        return 200, dict(XML_HEADERS), xml

    S3Response.get_bucket_versioning = get_bucket_versioning

    # moto's PutBucketVersioning only keeps <Status>; remember <MfaDelete> as well.
    original_put = S3Response._bucket_response_put

    @functools.wraps(original_put)
    def _bucket_response_put(self, request, bucket_name, querystring):  # type: ignore[no-untyped-def]
        response = original_put(self, request, bucket_name, querystring)
        if "versioning" in querystring:
            mfa = re.search(r"<MfaDelete>([A-Za-z]+)</MfaDelete>", self.body.decode("utf-8"))
            if mfa:
                self.backend.get_bucket(bucket_name).mfa_delete = mfa.group(1)
        return response

    S3Response._bucket_response_put = _bucket_response_put


# --- b. GetBucketReplication ---------------------------------------------------------------
def patch_get_bucket_replication() -> None:
    """Render the stored (xmltodict-parsed) PutBucketReplication body back verbatim."""

    def get_bucket_replication(self: S3Response) -> Any:
        replication = self.backend.get_bucket_replication(self.bucket_name)
        if not replication:
            raise ReplicationConfigurationNotFoundError(bucket_name=self.bucket_name)
        # Drop attributes from the request (its xmlns) and set AWS's namespace.
        config = {k: v for k, v in replication.items() if not k.startswith("@")}
        xml = xmltodict.unparse({"ReplicationConfiguration": {"@xmlns": S3_NS, **config}})
        return 200, dict(XML_HEADERS), xml

    S3Response.get_bucket_replication = get_bucket_replication


# --- c. CloudFormation AWS::IAM::Role inline policies ---------------------------------------
def _policy_json(document: Any) -> str:
    """A policy document as JSON text; a YAML template may have parsed Version as a date."""
    if isinstance(document, str):
        return document
    return json.dumps(document, default=str)


def patch_cfn_role_policies() -> None:
    """Store inline role policies given as dicts (the CFN path) as JSON, and apply them on update."""
    original_put_policy = Role.put_policy

    def put_policy(self: Role, policy_name: str, policy_json: Any) -> None:
        original_put_policy(self, policy_name, _policy_json(policy_json))

    Role.put_policy = put_policy

    original_update = Role.update_from_cloudformation_json.__func__  # classmethod

    def update_from_cloudformation_json(cls, original_resource, new_resource_name, cloudformation_json,  # type: ignore[no-untyped-def]
                                        account_id, region_name):
        role = original_update(cls, original_resource, new_resource_name, cloudformation_json,
                               account_id, region_name)
        properties = cloudformation_json["Properties"]
        role.max_session_duration = properties.get("MaxSessionDuration", 3600)
        if "AssumeRolePolicyDocument" in properties:
            iam_backends[account_id][get_partition(region_name)].update_assume_role_policy(
                role.name, _policy_json(properties["AssumeRolePolicyDocument"])
            )
        role.policies.clear()
        for policy in properties.get("Policies", []):
            role.put_policy(policy["PolicyName"], policy["PolicyDocument"])
        return role

    Role.update_from_cloudformation_json = classmethod(update_from_cloudformation_json)


# --- d. x-amz-expected-bucket-owner ---------------------------------------------------------
def patch_expected_bucket_owner() -> None:
    """403 AccessDenied when x-amz-expected-bucket-owner names another account than the bucket's."""

    def check_owner(handler):  # type: ignore[no-untyped-def]
        @functools.wraps(handler)
        def wrapper(self, request, full_url):  # type: ignore[no-untyped-def]
            expected = request.headers.get("x-amz-expected-bucket-owner")
            if expected:
                bucket_name = self.parse_bucket_name_from_url(request, full_url)
                owner = s3_backends.bucket_accounts.get(bucket_name)  # (partition, account_id)
                if owner and owner[1] != expected:
                    if request.method == "HEAD":
                        return 403, {}, ""
                    raise S3AccessDeniedError()
            return handler(self, request, full_url)

        return wrapper

    S3Response._bucket_response = check_owner(S3Response._bucket_response)
    S3Response._key_response = check_owner(S3Response._key_response)


# --- e. 12-digit access key ids act as that account -----------------------------------------
def patch_numeric_access_keys() -> None:
    """Requests signed with a 12-digit access key id act as that account (not 123456789012)."""
    original = BaseResponse.get_current_account

    def get_current_account(self: BaseResponse) -> str:
        # moto's own overrides (MOTO_ACCOUNT_ID, x-moto-account-id header) still win.
        if "MOTO_ACCOUNT_ID" not in os.environ and "x-moto-account-id" not in self.headers:
            match = re.search(r"Credential=(\d{12})/", self.headers.get("Authorization") or "")
            if match:
                return match.group(1)
        return original(self)

    BaseResponse.get_current_account = get_current_account


# --- f. deleted stacks stay deleted ------------------------------------------------------------
def patch_cfn_delete_missing_role() -> None:
    """A stack's role already deleted outside CloudFormation counts as deleted (h)."""
    original = Role.delete_from_cloudformation_json.__func__  # classmethod

    def delete_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id,  # type: ignore[no-untyped-def]
                                        region_name):
        backend = iam_backends[account_id][get_partition(region_name)]
        if not any(role.name == resource_name for role in backend.roles.values()):
            return None
        return original(cls, resource_name, cloudformation_json, account_id, region_name)

    Role.delete_from_cloudformation_json = classmethod(delete_from_cloudformation_json)


def patch_cfn_dropped_parameters() -> None:
    """Parameters and exports of an updated stack are its new template's (i)."""
    original = ResourceMap.load_parameters

    def load_parameters(self: ResourceMap) -> None:
        declared = self._template.get("Parameters", {})
        self.input_parameters = {k: v for k, v in (self.input_parameters or {}).items() if k in declared}
        for key in list(self.resolved_parameters):
            if not key.startswith("AWS::") and key not in declared:
                del self.resolved_parameters[key]
        original(self)

    ResourceMap.load_parameters = load_parameters

    update_stack = CloudFormationBackend.update_stack

    @functools.wraps(update_stack)
    def update_stack_exports(self: CloudFormationBackend, name: str, *args: Any, **kwargs: Any) -> Stack:
        earlier = [export.name for export in self.get_stack(name).exports]
        stack = update_stack(self, name, *args, **kwargs)
        for export_name in earlier:
            if getattr(self.exports.get(export_name), "exporting_stack_id", None) == stack.stack_id:
                del self.exports[export_name]
        for export in stack.exports:
            self.exports[export.name] = export
        return stack

    CloudFormationBackend.update_stack = update_stack_exports


def patch_deleted_stacks() -> None:
    """No Outputs/resources for a DELETE_COMPLETE stack, so describing it cannot re-create them."""
    outputs, resources = Stack.outputs.fget, Stack.stack_resources.fget

    Stack.outputs = property(lambda self: None if self.status == "DELETE_COMPLETE" else outputs(self))
    Stack.stack_resources = property(lambda self: [] if self.status == "DELETE_COMPLETE" else resources(self))


# --- g. one recorded request per line --------------------------------------------------------
def patch_recorder_lines() -> None:
    """Serialize the recorder's appends, so concurrent requests never share a line."""
    from moto.moto_api._internal.recorder.models import Recorder

    lock = threading.Lock()
    original = Recorder._record_request

    @functools.wraps(original)
    def record_request(self: Any, *args: Any, **kwargs: Any) -> None:
        with lock:
            original(self, *args, **kwargs)

    Recorder._record_request = record_request


# --- j. Object Lock configuration --------------------------------------------------------------
def patch_object_lock_configuration() -> None:
    """Answer the default retention's one period; set it on a bucket that holds objects."""

    def get_object_lock_configuration(self: S3Response) -> Any:
        enabled, mode, days, years = self.backend.get_object_lock_configuration(self.bucket_name)
        config: dict[str, Any] = {"ObjectLockEnabled": "Enabled" if enabled else "Disabled"}
        if mode:
            retention: dict[str, Any] = {"Mode": mode}
            if days:
                retention["Days"] = days
            if years:
                retention["Years"] = years
            config["Rule"] = {"DefaultRetention": retention}
        self.data["Action"] = "GetObjectLockConfiguration"
        return self.serialized(ActionResult({"ObjectLockConfiguration": config}))

    S3Response.get_object_lock_configuration = get_object_lock_configuration

    def put_object_lock_configuration(self: S3Backend, bucket_name: str, lock_enabled: bool,
                                      mode: str | None = None, days: int | None = None,
                                      years: int | None = None) -> None:
        bucket = self.get_bucket(bucket_name)
        if not bucket.is_versioned:
            raise InvalidBucketState(
                "Versioning must be 'Enabled' on the bucket to apply a Object Lock configuration"
            )
        if lock_enabled:
            bucket.object_lock_enabled = True
            bucket.versioning_status = "Enabled"
        bucket.default_lock_mode = mode
        bucket.default_lock_days = days
        bucket.default_lock_years = years

    S3Backend.put_object_lock_configuration = put_object_lock_configuration


def apply_patches() -> None:
    patch_get_bucket_versioning()
    patch_get_bucket_replication()
    patch_cfn_role_policies()
    patch_expected_bucket_owner()
    patch_numeric_access_keys()
    patch_deleted_stacks()
    patch_cfn_delete_missing_role()
    patch_cfn_dropped_parameters()
    patch_recorder_lines()
    patch_object_lock_configuration()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no per-request lines
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))

    apply_patches()
    app = DomainDispatcherApplication(create_backend_app)
    app.debug = True  # type: ignore[attr-defined]  # as moto.server does
    server = make_server(args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler)
    port = server.server_address[1]
    # moto builds some URLs (e.g. for Lambda/CFN custom resources) from MOTO_PORT.
    os.environ["MOTO_PORT"] = str(port)

    host = args.host if ":" not in args.host else f"[{args.host}]"
    print(f"listening on http://{host}:{port}", flush=True)
    sys.stdout = sys.stderr  # keep stdout to that single line (moto print()s some warnings)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
