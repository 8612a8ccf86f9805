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
k. Replication status: moto answers no ``x-amz-replication-status``. HeadObject and GetObject now
   answer it as S3 does (User Guide, "Getting replication status information"): ``PENDING``,
   ``COMPLETED`` or ``FAILED`` on a source version a rule replicates (``COMPLETED`` only once
   every destination has it, ``FAILED`` as soon as one fails), ``REPLICA`` on a replica; no
   header on a version no rule replicates.
l. Live replication (emulator/replication.py): moto stores replication configurations and never
   copies an object. Every new version (PutObject, CopyObject, CompleteMultipartUpload: all go
   through ``S3Backend.put_object``) written to a bucket with versioning Enabled and a
   replication configuration is now replicated once its request is done, as S3 does ("What does
   Amazon S3 replicate?", "Replication configuration file elements"): rules with Status Enabled
   whose filter matches (V2 ``Filter`` with Prefix, Tag or And; a V1 rule's Prefix); of the rules
   with the same destination bucket, the one with the highest Priority (API Reference,
   ReplicationRule: "The higher the number, the higher the priority"); SSE-KMS objects only by
   rules with ``SourceSelectionCriteria.SseKmsEncryptedObjects`` Enabled, and then only with a
   ``ReplicaKmsKeyID``; never a replica, nor an object in GLACIER or DEEP_ARCHIVE. The version
   reads PENDING when the write answers; a background worker (one thread, in order, no delay)
   copies it. The replica is a new version of the destination bucket under the same key with the
   source's version id, last-modified time, body, ETag, metadata and checksum, the rule's
   Destination.StorageClass (else the source's), ``REPLICA``; SSE-S3 stays SSE-S3, SSE-KMS is
   encrypted with the ReplicaKmsKeyID keeping the source's Bucket Key setting ("Using an S3
   Bucket Key with replication"), an unencrypted object takes the destination's default
   encryption; Object Lock: the source version's retention (and legal hold) if it has one, else
   the destination's default retention ("What does Amazon S3 replicate?"); tags go along where
   the role may read and replicate them; with ``AccessControlTranslation`` Owner Destination
   the replica's ACL is private to the destination owner ("Changing the replica owner"), else
   the source's ACL is copied. The destination must exist and be versioned; a source bucket with
   Object Lock needs a destination with Object Lock. Not emulated: delete marker replication
   (a DeleteObject is never replicated), replica modification sync, existing-object and Batch
   Replication, Replication Time Control timing and metrics (replication is immediate),
   replication of later ACL or tag changes, retries (a FAILED version stays FAILED, as on AWS),
   SCPs/RCPs and S3 Block Public Access, object ownership by a third account.
m. Replication permissions (emulator/policy_eval.py, one evaluator for every policy): the copy
   is made as a session of the configuration's role, and each request S3 makes is decided as
   AWS decides it ("Setting up permissions for live replication", "Replicating encrypted
   objects"; IAM "Policy evaluation logic", "Cross-account policy evaluation logic"), in this
   order: ``sts:AssumeRole`` by ``s3.amazonaws.com`` against the role's trust policy (context
   ``aws:SourceAccount`` = the source bucket's owner, ``aws:SourceArn`` = its ARN);
   ``s3:GetObjectVersionForReplication`` on ``arn:aws:s3:::SRC/KEY`` (plus
   ``s3:GetObjectRetention`` and ``s3:GetObjectLegalHold`` when the source bucket has Object
   Lock); for an SSE-KMS source ``kms:Decrypt`` on its key; ``s3:ReplicateObject`` on
   ``arn:aws:s3:::DST/KEY``; ``s3:ObjectOwnerOverrideToBucketOwner`` with the owner override;
   on the replica key ``kms:Encrypt`` (SSE-KMS source) or ``kms:GenerateDataKey`` (unencrypted
   source into a bucket whose default is SSE-KMS), plus ``kms:Decrypt`` when the replica has a
   Bucket Key; then, for a tagged object, ``s3:GetObjectVersionTagging`` and ``s3:ReplicateTags``
   (denied: the replica has no tags, the replication still completes; the event's
   ``tags_denied`` says why). ``s3:GetObjectVersionAcl``, ``s3:GetReplicationConfiguration``,
   ``s3:ListBucket`` and the destination's ``s3:GetBucketVersioning`` are not evaluated (AWS does
   not document a replication failing on them at copy time). S3 requests are decided
   over the role's inline and attached managed policies (and its permissions boundary) and the
   bucket's policy: within one account either may allow, across accounts both must; KMS
   requests over the key policy (which must allow; a statement naming the account delegates to
   IAM policies) and the role's policies, with ``kms:ViaService`` = ``s3.<bucket region>.
   amazonaws.com`` (``amazonaws.com.cn`` in the aws-cn partition) of the bucket concerned,
   ``kms:CallerAccount``, ``kms:EncryptionContext:aws:s3:arn`` = the object's ARN, or the
   bucket's ARN under a Bucket Key. Every request also carries ``aws:PrincipalArn`` (the role
   ARN), ``aws:PrincipalAccount``, ``aws:PrincipalType``, ``aws:userid``, ``aws:PrincipalTag/*``,
   ``aws:ResourceAccount``, ``aws:CurrentTime``/``aws:EpochTime``; S3 object requests
   ``s3:VersionId`` and ``s3:ExistingObjectTag/*`` (source), ``s3:x-amz-server-side-encryption``,
   ``s3:x-amz-server-side-encryption-aws-kms-key-id``, ``s3:x-amz-storage-class`` and the
   ``s3:object-lock-*`` keys (replica). An explicit Deny anywhere wins. A denial fails the
   replication (``FAILED``) and the log names it. The session name (``s3-replication``) is the
   emulator's: AWS does not document S3's.
n. SSE-KMS keys: moto records an object's ``x-amz-server-side-encryption-aws-kms-key-id`` as it
   was given (an alias, a bare id, or nothing for the AWS managed key). S3 records the key's ARN
   (an alias or bare id resolved in the requester's account and the bucket's region; none given:
   the AWS managed key ``alias/aws/s3``), and HeadObject answers it; now so does the emulator
   (an unknown key is kept as given). moto gave ``aws/s3`` the default policy of a customer key
   (the account root, ``kms:*``); it now has the policy AWS gives it: every principal of the
   account through S3 (``kms:CallerAccount`` and ``kms:ViaService`` conditions) and key metadata
   to the account; its KeyManager is ``AWS``.
o. Object Lock default retention on CompleteMultipartUpload: moto applied a bucket's default
   retention on PutObject and CopyObject only; S3 applies it to every new object (API Reference,
   DefaultRetention: "the default Object Lock retention settings for new objects placed in the
   specified bucket"), so a completed multipart upload with no retention of its own now gets
   the default too (moto drops a retention given on CreateMultipartUpload: not emulated).
p. GetObjectRetention: moto 5.2.5 has none (``GET ?retention`` answered a 500). It now answers
   ``<Retention><Mode/><RetainUntilDate/></Retention>`` for the version (``versionId``) as the API
   Reference's GetObjectRetention does, ``InvalidRequest`` when the bucket has no Object Lock, and
   ``NoSuchObjectLockConfiguration`` when the version has no retention.
q. ``/_emulator/replication`` (served on the emulator's own port; not AWS): the replication
   log, one event per (source version, rule), oldest first::

       GET    /_emulator/replication[?bucket=B][&key=K][&since=SEQ][&wait=SECONDS]
       DELETE /_emulator/replication            -> {"cleared": N}
       POST   /_emulator/replication/pause      -> {"paused": true}   (the worker holds)
       POST   /_emulator/replication/resume     -> {"paused": false}

   GET answers ``{"pending": N, "paused": bool, "events": [...]}``; with ``wait`` it first waits
   (at most 600 s) until no replication is queued or running, so ``pending`` 0 means every
   write made before the call has its outcome. ``bucket`` matches the source or the
   destination bucket; ``since`` keeps events whose ``seq`` is greater. An event:
   ``seq``, ``time``, ``source_bucket``, ``source_account``, ``key``, ``version_id``,
   ``rule_id``, ``rule_priority``, ``destination_bucket``, ``destination_account``, ``status``
   (``COMPLETED`` / ``FAILED`` / ``SKIPPED``), ``reason`` (why skipped or failed; on COMPLETED,
   tags that were not replicated), ``requests`` (each ``{"action", "resource", "allowed"}`` in
   the order made), for COMPLETED ``replica`` (``version_id``, ``storage_class``, ``encryption``,
   ``kms_key_id``, ``bucket_key_enabled``, ``object_lock_mode``,
   ``object_lock_retain_until_date``, ``object_lock_legal_hold``, ``owner_override``,
   ``tags_replicated``) and, when tags were denied, ``tags_denied`` (shaped as ``denied``), for
   a denial ``denied``: ``action``, ``resource``, ``principal`` (the
   session ARN), ``principal_role``, ``reason`` (``explicit deny`` / ``no statement allows``),
   ``policy`` (e.g. ``bucket policy of B``, ``key policy of <key ARN>``, ``trust policy of role
   <ARN>``, ``identity policies of role R (names)``, ``inline policy P of role R``), ``policies``
   (the same as a list), ``statement`` (the Sid, or ``#N`` its index, of an explicit Deny),
   ``unmatched`` (the Allow statements that named the request but whose conditions failed:
   ``policy``, ``statement``, ``conditions`` [{``operator``, ``key``, ``expected``,
   ``actual``}]), ``evaluated`` (each policy's outcome) and ``context`` (the request context
   used). ``POST /moto-api/reset`` clears the log too.
r. Default settings of new buckets: moto made a bucket with no Object Ownership setting and no
   Block Public Access configuration (GetBucketOwnershipControls answered
   OwnershipControlsNotFoundError, GetPublicAccessBlock NoSuchPublicAccessBlockConfiguration).
   Since April 2023 S3 gives every new bucket Object Ownership ``BucketOwnerEnforced`` (ACLs
   off) and all four Block Public Access settings on (User Guide, "Default settings for new S3
   buckets FAQ"; API Reference, CreateBucket: "By default, Object Ownership is set to
   BucketOwnerEnforced and ACLs are disabled"); a CreateBucket with ``x-amz-object-ownership``
   still sets that value. Block Public Access is stored and answered, not enforced.
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
from moto.kms.models import KmsBackend
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.core.responses import ActionResult
from moto.s3.exceptions import (
    InvalidBucketState,
    LockNotEnabled,
    ReplicationConfigurationNotFoundError,
    S3AccessDeniedError,
)
from moto.s3.models import S3Backend, s3_backends
from moto.s3.responses import S3Response
from moto.utilities.utils import get_partition

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import replication  # noqa: E402  (emulator/replication.py, beside this file)

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


# --- p. GetObjectRetention ---------------------------------------------------------------------
def patch_get_object_retention() -> None:
    """GET ?retention answers the version's retention, as AWS does."""
    original = S3Response._key_response_get

    def _key_response_get(self: S3Response, query: dict[str, Any], key_name: str) -> Any:
        if "retention" not in query:
            return original(self, query, key_name)
        self._set_action("KEY", "GET", query)
        bucket = self.backend.get_bucket(self.bucket_name)
        if not bucket.object_lock_enabled:
            raise LockNotEnabled
        key, _ = self._get_key()
        headers = dict(XML_HEADERS)
        if key.version_id != "null":
            headers["x-amz-version-id"] = key.version_id
        if not key.lock_mode:
            error = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchObjectLockConfiguration</Code>"
                     "<Message>The specified object does not have a ObjectLock configuration</Message></Error>")
            return 404, headers, error
        xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Retention xmlns="{S3_NS}">'
               f"<Mode>{escape(key.lock_mode)}</Mode><RetainUntilDate>{escape(str(key.lock_until))}</RetainUntilDate>"
               "</Retention>")
        return 200, headers, xml

    S3Response._key_response_get = _key_response_get


# --- k-o, q. replication (emulator/replication.py, emulator/policy_eval.py) -----------------------
def patch_replication() -> None:
    """x-amz-replication-status, live replication as the rule's role, key ARNs on SSE-KMS
    objects, the aws/s3 key policy, default retention on multipart uploads (k-o)."""
    replication.patch_replication_status_header()
    replication.patch_put_object(replication.resolve_object_key)

    original_default_keys = KmsBackend._generate_default_keys

    def _generate_default_keys(self: KmsBackend, alias_name: str) -> str | None:
        key_id = original_default_keys(self, alias_name)
        if key_id is not None:
            key = self.keys[key_id]
            key.key_manager = "AWS"
            if alias_name == "alias/aws/s3":
                key.policy = replication.kms_managed_key_policy(self.account_id, self.region_name)
        return key_id

    KmsBackend._generate_default_keys = _generate_default_keys

    original_complete = S3Backend.complete_multipart_upload

    @functools.wraps(original_complete)
    def complete_multipart_upload(self: S3Backend, bucket_name: str, multipart_id: str, body: Any) -> Any:
        key = original_complete(self, bucket_name, multipart_id, body)
        bucket = self.get_bucket(bucket_name)
        if key is not None and bucket.has_default_lock and not key.lock_mode and not key.lock_until:
            key.lock_mode = bucket.default_lock_mode
            key.lock_until = bucket.default_retention()
        return key

    S3Backend.complete_multipart_upload = complete_multipart_upload


# --- r. default settings of new buckets --------------------------------------------------------
def patch_new_bucket_defaults() -> None:
    """New buckets get BucketOwnerEnforced and Block Public Access on, as on AWS since 2023."""
    from moto.s3.models import PublicAccessBlock

    original = S3Backend.create_bucket

    @functools.wraps(original)
    def create_bucket(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        bucket = original(self, *args, **kwargs)
        if bucket.ownership_rule is None:
            bucket.ownership_rule = "BucketOwnerEnforced"
        if bucket.public_access_block is None:
            bucket.public_access_block = PublicAccessBlock(True, True, True, True)
        return bucket

    S3Backend.create_bucket = create_bucket


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
    patch_replication()
    patch_get_object_retention()
    patch_new_bucket_defaults()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no per-request lines
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))

    apply_patches()
    moto_app = DomainDispatcherApplication(create_backend_app)
    moto_app.debug = True  # type: ignore[attr-defined]  # as moto.server does
    app = replication.EmulatorApp(moto_app)  # /_emulator/replication, replication after each request (q)
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
