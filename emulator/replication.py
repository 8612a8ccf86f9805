"""S3 live replication for the emulator (patches k-o and q of emulator/server.py; read them there).

After a request writes a new object version into a bucket with a replication configuration,
the rules are applied as S3 applies them, the version turns PENDING, and a background worker
performs each copy as the rule's role, deciding every request S3 makes with
emulator/policy_eval.py against the policies AWS evaluates. The worker never blocks a request
and never stops on an error (an unexpected one fails that replication and is logged). Every
(source version, rule) outcome is an event of the log served at ``/_emulator/replication``.

The AWS pages each rule follows are named in comments (S3 User Guide unless said otherwise):
"Replicating objects within and across Regions", "Replication configuration file elements",
"Setting up permissions for live replication", "Replicating encrypted objects", "Using an S3
Bucket Key with replication", "Getting replication status information", "What does Amazon S3
replicate?", "Changing the replica owner", "Using Object Lock with S3 Replication".
"""

from __future__ import annotations

import datetime
import functools
import json
import queue
import threading
import time
import traceback
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from moto.iam.models import iam_backends
from moto.kms.models import kms_backends
from moto.s3.models import FakeKey, S3Backend, get_canned_acl, s3_backends
from moto.utilities.utils import get_partition

from policy_eval import Decision, Principal, Request, decide

# The session name S3 gives its role sessions is not documented; this one is the emulator's.
SESSION_NAME = "s3-replication"
S3_SERVICE = "s3.amazonaws.com"
# "What does Amazon S3 replicate?": objects in these storage classes are not replicated.
ARCHIVED = {"GLACIER", "DEEP_ARCHIVE"}
KMS_ALGORITHMS = {"aws:kms", "aws:kms:dsse"}

_local = threading.local()


def dns_suffix(partition: str) -> str:
    """The endpoint domain of a partition (AWS General Reference, "Service endpoints")."""
    return "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com"


def _now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _truthy(value: Any) -> bool:
    return str(value).lower() == "true"


# --- the log ------------------------------------------------------------------------------------


class ReplicationLog:
    """The events, in order, and the count of replications not yet done (queued or running)."""

    def __init__(self) -> None:
        self._events: list[dict[str, Any]] = []
        self._seq = 0
        self._outstanding = 0
        self._cond = threading.Condition()

    def add(self, event: dict[str, Any]) -> None:
        with self._cond:
            self._seq += 1
            self._events.append({"seq": self._seq, "time": _now_iso(), **event})

    def begin(self) -> None:
        with self._cond:
            self._outstanding += 1

    def end(self) -> None:
        with self._cond:
            self._outstanding -= 1
            self._cond.notify_all()

    def wait(self, timeout: float) -> int:
        """Waits until nothing is outstanding or ``timeout`` seconds pass; returns what is left."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while self._outstanding > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return self._outstanding

    def events(self, bucket: str | None = None, key: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        with self._cond:
            return [e for e in self._events
                    if e["seq"] > since
                    and (bucket is None or bucket in (e.get("source_bucket"), e.get("destination_bucket")))
                    and (key is None or e.get("key") == key)]

    def clear(self) -> int:
        with self._cond:
            n = len(self._events)
            self._events.clear()
            return n

    @property
    def outstanding(self) -> int:
        with self._cond:
            return self._outstanding


LOG = ReplicationLog()


# --- the worker ---------------------------------------------------------------------------------


@dataclass
class Job:
    """One source version and the rules it is replicated by (taken when it was written)."""

    bucket: Any  # FakeBucket
    key: FakeKey
    role_arn: str
    rules: list[dict[str, Any]]


class Worker:
    """One daemon thread that replicates jobs in order; ``pause`` holds it (to observe PENDING)."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Job] = queue.Queue()
        self._running = threading.Event()
        self._running.set()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, job: Job) -> None:
        LOG.begin()
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="s3-replication", daemon=True)
                self._thread.start()
        self._queue.put(job)

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            self._running.wait()
            try:
                replicate(job)
            except BaseException as e:  # the worker must outlive any replication
                try:
                    _fail_unexpected(job, e)
                except BaseException:
                    pass
            finally:
                LOG.end()


WORKER = Worker()


# --- rules ---------------------------------------------------------------------------------------


def _tags_of(key: FakeKey) -> dict[str, str]:
    backend = s3_backends[key.account_id][key.partition]
    return dict(backend.tagger.get_tag_dict_for_resource(key.arn))


def _rule_filter(rule: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """The rule's key prefix and tags ("Replication configuration file elements": Filter with
    Prefix, Tag or And; a V1 rule has a Prefix of its own and no Filter)."""
    if "Filter" in rule:
        f = rule.get("Filter") or {}
        if "And" in f:
            f = f.get("And") or {}
        tags = {str(t.get("Key")): str(t.get("Value") or "") for t in _as_list(f.get("Tag")) if isinstance(t, dict)}
        return str(f.get("Prefix") or ""), tags
    return str(rule.get("Prefix") or ""), {}


def _destination_bucket(rule: dict[str, Any]) -> str:
    arn = str((rule.get("Destination") or {}).get("Bucket") or "")
    return arn.split(":::", 1)[1] if ":::" in arn else arn


def _priority(rule: dict[str, Any]) -> int:
    try:
        return int(rule.get("Priority") or 0)
    except (TypeError, ValueError):
        return 0


def _sse_kms_opted_in(rule: dict[str, Any]) -> bool:
    criteria = (rule.get("SourceSelectionCriteria") or {}).get("SseKmsEncryptedObjects") or {}
    return criteria.get("Status") == "Enabled"


def _event_base(bucket: Any, key: FakeKey, rule: dict[str, Any]) -> dict[str, Any]:
    dest = _destination_bucket(rule)
    owner = s3_backends.bucket_accounts.get(dest)
    return {
        "source_bucket": bucket.name,
        "source_account": bucket.account_id,
        "key": key.name,
        "version_id": key.version_id,
        "rule_id": rule.get("ID"),
        "rule_priority": _priority(rule),
        "destination_bucket": dest,
        "destination_account": owner[1] if owner else None,
    }


def plan(bucket: Any, key: FakeKey) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rules that replicate this version, and the skipped rules with why."""
    config = getattr(bucket, "replication", None) or {}
    rules = [r for r in _as_list(config.get("Rule")) if isinstance(r, dict)]
    tags = _tags_of(key)
    encryption = key.encryption
    matched: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []

    def skip(rule: dict[str, Any], why: str) -> None:
        skipped.append({**_event_base(bucket, key, rule), "status": "SKIPPED", "reason": why})

    for rule in rules:
        prefix, want_tags = _rule_filter(rule)
        if rule.get("Status") != "Enabled":
            skip(rule, "rule Status is not Enabled")
        elif not key.name.startswith(prefix):
            skip(rule, f"key does not start with the rule's prefix {prefix!r}")
        elif any(tags.get(k) != v for k, v in want_tags.items()):
            skip(rule, f"object tags {tags} do not include the rule's tags {want_tags}")
        elif encryption in KMS_ALGORITHMS and not _sse_kms_opted_in(rule):
            # "Replicating encrypted objects": S3 replicates SSE-KMS objects only for a rule
            # whose SourceSelectionCriteria.SseKmsEncryptedObjects is Enabled.
            skip(rule, f"object is {encryption} and the rule does not set SourceSelectionCriteria."
                       "SseKmsEncryptedObjects Enabled")
        elif key.storage_class in ARCHIVED:
            skip(rule, f"objects in {key.storage_class} are not replicated")
        else:
            matched.append(rule)
    # API Reference, ReplicationRule.Priority: among rules with the same destination bucket,
    # the object is replicated by the one with the highest priority ("The higher the number,
    # the higher the priority").
    chosen: list[dict[str, Any]] = []
    by_dest: dict[str, dict[str, Any]] = {}
    for rule in matched:
        dest = _destination_bucket(rule)
        if dest not in by_dest or _priority(rule) > _priority(by_dest[dest]):
            by_dest[dest] = rule
    for rule in matched:
        winner = by_dest[_destination_bucket(rule)]
        if winner is rule:
            chosen.append(rule)
        else:
            skip(rule, f"rule {winner.get('ID')!r} (Priority {_priority(winner)}) replicates to the same "
                       "destination with a higher priority")
    return chosen, skipped


def schedule(bucket: Any, key: FakeKey) -> None:
    """Called once a request that wrote ``key`` is done: mark it PENDING and queue it."""
    config = getattr(bucket, "replication", None)
    if not config:
        return
    if getattr(key, "replication_status", None) == "REPLICA":
        # "What does Amazon S3 replicate?": replicas created by another rule are not replicated.
        for rule in _as_list(config.get("Rule")):
            if isinstance(rule, dict):
                LOG.add({**_event_base(bucket, key, rule), "status": "SKIPPED",
                         "reason": "the object is a replica (REPLICA): S3 does not replicate replicas"})
        return
    if bucket.versioning_status != "Enabled":
        for rule in _as_list(config.get("Rule")):
            if isinstance(rule, dict):
                LOG.add({**_event_base(bucket, key, rule), "status": "SKIPPED",
                         "reason": f"source bucket versioning is {bucket.versioning_status or 'not enabled'}"})
        return
    chosen, skipped = plan(bucket, key)
    for event in skipped:
        LOG.add(event)
    if not chosen:
        return
    # "Getting replication status information": an eligible source version reads PENDING until
    # every destination is done.
    key.replication_status = "PENDING"
    key.replication_rules = {str(rule.get("ID")): "PENDING" for rule in chosen}
    WORKER.submit(Job(bucket, key, str(config.get("Role") or ""), [dict(r) for r in chosen]))


# --- requests as the role -------------------------------------------------------------------------


@dataclass
class Role:
    arn: str
    account: str
    partition: str
    model: Any  # moto Role
    backend: Any

    @property
    def name(self) -> str:
        return self.model.name

    def identity_policies(self) -> list[tuple[str, Any]]:
        policies = [(f"inline policy {name} of role {self.name}", doc) for name, doc in self.model.policies.items()]
        for arn, policy in self.model.managed_policies.items():
            policies.append((f"managed policy {arn} attached to role {self.name}", _default_document(policy)))
        return policies

    def identity_label(self) -> str:
        names = list(self.model.policies) + list(self.model.managed_policies)
        return f"identity policies of role {self.name} ({', '.join(names) if names else 'none'})"

    def boundary(self) -> tuple[str, Any] | None:
        arn = getattr(self.model, "permissions_boundary_arn", None)
        if not arn:
            return None
        policy = self.backend.managed_policies.get(arn) or getattr(self.backend, "aws_managed_policies", {}).get(arn)
        if policy is None:
            return (f"permissions boundary {arn} of role {self.name} (not found)", "{}")
        return (f"permissions boundary {arn} of role {self.name}", _default_document(policy))


def _default_document(policy: Any) -> Any:
    for version in getattr(policy, "versions", []):
        if version.is_default:
            doc = version.document
            if isinstance(doc, str) and doc.startswith("%7B"):
                doc = urllib.parse.unquote(doc)
            return doc
    return "{}"


class Failure(Exception):
    """Replication of this version by this rule fails; ``reason`` says why."""

    def __init__(self, reason: str, denied: Decision | None = None):
        super().__init__(reason)
        self.reason = reason
        self.denied = denied


@dataclass
class Attempt:
    """The requests one replication makes, in order, and their decisions."""

    role: Role | None = None
    principal: Principal | None = None
    decisions: list[Decision] = field(default_factory=list)

    def context(self, resource_account: str | None, extra: dict[str, Any]) -> dict[str, Any]:
        assert self.role is not None
        now = datetime.datetime.now(datetime.timezone.utc)
        ctx: dict[str, Any] = {
            "aws:PrincipalArn": self.role.arn,
            "aws:PrincipalAccount": self.role.account,
            "aws:PrincipalType": "AssumedRole",
            "aws:userid": f"{self.role.model.id}:{SESSION_NAME}",
            "aws:CurrentTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "aws:EpochTime": str(int(now.timestamp())),
        }
        for tag in (getattr(self.role.model, "tags", None) or {}).values():
            if isinstance(tag, dict) and "Key" in tag:
                ctx[f"aws:PrincipalTag/{tag['Key']}"] = tag.get("Value", "")
        if resource_account:
            ctx["aws:ResourceAccount"] = resource_account
        ctx.update(extra)
        return ctx

    def check(self, decision: Decision, fatal: bool = True) -> bool:
        self.decisions.append(decision)
        if not decision.allowed and fatal:
            raise Failure(f"{decision.request.action} on {decision.request.resource} denied: {decision.reason} "
                          f"({' and '.join(decision.policies)})", decision)
        return decision.allowed

    def s3(self, action: str, resource: str, bucket: Any, extra: dict[str, Any], fatal: bool = True) -> bool:
        assert self.role is not None and self.principal is not None
        policy = bucket.policy
        request = Request(action, resource, self.principal, self.context(bucket.account_id, extra))
        decision = decide(request, identity=self.role.identity_policies(), identity_label=self.role.identity_label(),
                          resource=(f"bucket policy of {bucket.name}", policy) if policy else None,
                          resource_account=bucket.account_id, kind="s3", boundary=self.role.boundary())
        return self.check(decision, fatal)

    def kms(self, action: str, key: Any, region: str, partition: str, s3_arn: str) -> bool:
        """A KMS request S3 makes for the role ("Replicating encrypted objects"; KMS Developer
        Guide, "kms:ViaService", "kms:EncryptionContext:context-key", "kms:CallerAccount")."""
        assert self.role is not None and self.principal is not None
        extra = {
            "kms:ViaService": f"s3.{region}.{dns_suffix(partition)}",
            "kms:CallerAccount": self.role.account,
            "kms:EncryptionContext:aws:s3:arn": s3_arn,
            "kms:EncryptionContextKeys": ["aws:s3:arn"],
            "kms:EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
        }
        request = Request(action, key.arn, self.principal, self.context(key.account_id, extra))
        decision = decide(request, identity=self.role.identity_policies(), identity_label=self.role.identity_label(),
                          resource=(f"key policy of {key.arn}", key.policy), resource_account=key.account_id,
                          kind="kms", boundary=self.role.boundary())
        return self.check(decision)


def _role(role_arn: str) -> Role:
    parts = role_arn.split(":", 5)
    if len(parts) != 6 or parts[2] != "iam" or not parts[5].startswith("role/"):
        raise Failure(f"the replication configuration's Role {role_arn!r} is not a role ARN")
    partition, account = parts[1], parts[4]
    backend = iam_backends[account][partition]
    for model in backend.roles.values():
        if model.arn == role_arn:
            return Role(role_arn, account, partition, model, backend)
    raise Failure(f"role {role_arn} does not exist")


def _resolve_key(key_id: str | None, account: str, region: str) -> Any:
    """The KMS key an S3 key id names: an ARN (key or alias), a bare id or alias resolved in
    ``account`` and ``region``, or None for the AWS managed key aws/s3."""
    alias_or_id = key_id or "alias/aws/s3"
    if alias_or_id.startswith("arn:"):
        parts = alias_or_id.split(":", 5)
        if len(parts) != 6:
            raise Failure(f"KMS key {key_id!r} is not a key or alias ARN")
        region, account, alias_or_id = parts[3], parts[4], parts[5]
    try:
        backend = kms_backends[account][region]
    except Exception:
        raise Failure(f"KMS key {key_id or 'alias/aws/s3'}: no KMS in account {account} region {region}") from None
    try:
        if alias_or_id.startswith("alias/"):
            raw = backend.get_key_id_from_alias(alias_or_id)
            if raw is None:
                raise KeyError(alias_or_id)
            return backend.keys[raw]
        return backend.keys[alias_or_id.removeprefix("key/")]
    except KeyError:
        raise Failure(f"KMS key {key_id or 'alias/aws/s3'} not found in account {account} region {region}") from None


def _usable(key: Any) -> None:
    if getattr(key, "key_state", "Enabled") != "Enabled":
        raise Failure(f"KMS key {key.arn} is {key.key_state}")


def _retention(source: FakeKey, dest: Any) -> tuple[str | None, str | None, str | None]:
    """The replica's Object Lock mode, retain-until date and legal hold ("What does Amazon S3
    replicate?": the source's retention if it has one, else the destination's default)."""
    if not dest.object_lock_enabled:
        return None, None, None
    legal = source.lock_legal_status if source.lock_legal_status == "ON" else None
    if source.lock_mode and source.lock_until:
        return source.lock_mode, source.lock_until, legal
    if dest.has_default_lock:
        return dest.default_lock_mode, dest.default_retention(), legal
    return None, None, legal


def replicate(job: Job) -> None:
    """Replicates one version by each of its rules, then sets the version's status."""
    for rule in job.rules:
        event = _event_base(job.bucket, job.key, rule)
        try:
            event.update(_replicate_one(job, rule))
            status = "COMPLETED"
        except Failure as f:
            status = "FAILED"
            event.update({"status": "FAILED", "reason": f.reason})
            if f.denied is not None:
                event["denied"] = f.denied.to_json()
            event["requests"] = getattr(f, "requests", [])
        except Exception as e:  # e.g. moto refusing the replica (InvalidStorageClass): this rule fails
            status = "FAILED"
            detail = "".join(traceback.format_exception_only(type(e), e)).strip()
            event.update({"status": "FAILED", "reason": f"writing the replica failed: {detail}"})
        _set_rule_status(job.key, str(rule.get("ID")), status)
        LOG.add(event)


def _set_rule_status(key: FakeKey, rule_id: str, status: str) -> None:
    states = getattr(key, "replication_rules", None) or {}
    states[rule_id] = status
    key.replication_rules = states
    values = set(states.values())
    # "Getting replication status information": COMPLETED only when every destination is
    # done, FAILED as soon as one fails, PENDING meanwhile.
    key.replication_status = "FAILED" if "FAILED" in values else "PENDING" if "PENDING" in values else "COMPLETED"


def _fail_unexpected(job: Job, error: BaseException) -> None:
    detail = "".join(traceback.format_exception_only(type(error), error)).strip()
    for rule in job.rules:
        state = (getattr(job.key, "replication_rules", None) or {}).get(str(rule.get("ID")))
        if state == "PENDING":
            _set_rule_status(job.key, str(rule.get("ID")), "FAILED")
            LOG.add({**_event_base(job.bucket, job.key, rule), "status": "FAILED",
                     "reason": f"emulator error: {detail}"})


def _replicate_one(job: Job, rule: dict[str, Any]) -> dict[str, Any]:
    attempt = Attempt()
    try:
        return _replicate_steps(job, rule, attempt)
    except Failure as f:
        f.requests = [_summary(d) for d in attempt.decisions]  # type: ignore[attr-defined]
        raise


def _summary(decision: Decision) -> dict[str, Any]:
    return {"action": decision.request.action, "resource": decision.request.resource, "allowed": decision.allowed}


def _replicate_steps(job: Job, rule: dict[str, Any], attempt: Attempt) -> dict[str, Any]:
    source_bucket, key = job.bucket, job.key
    partition = source_bucket.partition
    if not any(v is key for v in source_bucket.keys.getlist(key.name, [])):
        raise Failure("SrcVersionNotFound: the source version was deleted before it was replicated")

    dest_name = _destination_bucket(rule)
    owner = s3_backends.bucket_accounts.get(dest_name)
    if owner is None:
        raise Failure(f"destination bucket {dest_name} does not exist")
    dest_backend = s3_backends[owner[1]][owner[0]]
    dest = dest_backend.buckets.get(dest_name)
    if dest is None:
        raise Failure(f"destination bucket {dest_name} does not exist")

    # --- S3 assumes the rule's role ("Setting up permissions for live replication": the trust
    # policy names the s3.amazonaws.com service, optionally with aws:SourceAccount/SourceArn).
    role = _role(job.role_arn)
    attempt.role = role
    attempt.principal = Principal.role_session(role.arn, SESSION_NAME)
    source_arn = f"arn:{partition}:s3:::{source_bucket.name}"
    trust = Request("sts:AssumeRole", role.arn, Principal.service(S3_SERVICE), {
        "aws:SourceAccount": source_bucket.account_id,
        "aws:SourceArn": source_arn,
        "aws:PrincipalServiceName": S3_SERVICE,
        "aws:PrincipalIsAWSService": "true",
    })
    attempt.check(decide(trust, identity=[], identity_label="", resource=(
        f"trust policy of role {role.arn}", role.model.assume_role_policy_document),
        resource_account=role.account, kind="trust"))

    # --- read the source version ("Setting up permissions for live replication").
    object_arn = f"{source_arn}/{key.name}"
    tags = _tags_of(key)
    read_ctx: dict[str, Any] = {"s3:VersionId": key.version_id}
    read_ctx.update({f"s3:ExistingObjectTag/{k}": v for k, v in tags.items()})
    attempt.s3("s3:GetObjectVersionForReplication", object_arn, source_bucket, read_ctx)
    if source_bucket.object_lock_enabled:
        # "Using Object Lock with S3 Replication": two more permissions on the source, and the
        # destination must have Object Lock enabled too.
        attempt.s3("s3:GetObjectRetention", object_arn, source_bucket, read_ctx)
        attempt.s3("s3:GetObjectLegalHold", object_arn, source_bucket, read_ctx)
        if not dest.object_lock_enabled:
            raise Failure(f"source bucket {source_bucket.name} has Object Lock enabled and destination "
                          f"{dest_name} does not")

    source_kms = key.encryption in KMS_ALGORITHMS
    bucket_key = source_kms and _truthy(key.bucket_key_enabled)
    if source_kms:
        # "Replicating encrypted objects": kms:Decrypt on the source object's key; with an S3
        # Bucket Key the encryption context is the bucket ARN, not the object ARN.
        source_key = _resolve_key(key.kms_key_id, source_bucket.account_id, source_bucket.region_name)
        _usable(source_key)
        attempt.kms("kms:Decrypt", source_key, source_bucket.region_name, partition,
                    source_arn if bucket_key else object_arn)

    # --- write the replica.
    # "Replicating objects within and across Regions": the destination must be versioned.
    if dest.versioning_status != "Enabled":
        raise Failure(f"destination bucket {dest_name} versioning is {dest.versioning_status or 'not enabled'}")
    destination = rule.get("Destination") or {}
    dest_arn = f"arn:{dest.partition}:s3:::{dest_name}"
    replica_arn = f"{dest_arn}/{key.name}"
    storage = destination.get("StorageClass") or key.storage_class or "STANDARD"

    # The replica's encryption: "Replicating encrypted objects" (SSE-KMS objects with the rule's
    # ReplicaKmsKeyID; SSE-S3 stays SSE-S3; an unencrypted object takes the destination's
    # default encryption) and "Using an S3 Bucket Key with replication" (the replica keeps the
    # source object's Bucket Key setting).
    encryption, replica_key, replica_bucket_key = None, None, False
    kms_requests: list[tuple[str, Any, str]] = []
    if source_kms:
        replica_id = (destination.get("EncryptionConfiguration") or {}).get("ReplicaKmsKeyID")
        if not replica_id:
            raise Failure("the rule replicates SSE-KMS objects but sets no Destination.EncryptionConfiguration."
                          "ReplicaKmsKeyID")
        # An alias or bare id is resolved in the requester's account (API Reference,
        # EncryptionConfiguration): here, the role's.
        replica_key = _resolve_key(str(replica_id), role.account, dest.region_name)
        if replica_key.region != dest.region_name:
            raise Failure(f"replica KMS key {replica_key.arn} is not in the destination bucket's region "
                          f"{dest.region_name}")
        encryption, replica_bucket_key = key.encryption, bucket_key
        context = dest_arn if replica_bucket_key else replica_arn
        kms_requests.append(("kms:Encrypt", replica_key, context))
        if replica_bucket_key:
            # "Replicating encrypted objects", S3 Bucket Keys and replication: the replica key's
            # policy must allow kms:Decrypt to the calling principal.
            kms_requests.append(("kms:Decrypt", replica_key, context))
    elif key.encryption == "AES256":
        encryption = "AES256"
    elif dest.encryption:
        default = (dest.encryption.get("Rule") or {})
        default = default[0] if isinstance(default, list) else default
        sse = (default.get("ApplyServerSideEncryptionByDefault") or {})
        encryption = sse.get("SSEAlgorithm")
        if encryption in KMS_ALGORITHMS:
            replica_key = _resolve_key(sse.get("KMSMasterKeyID"), dest.account_id, dest.region_name)
            replica_bucket_key = _truthy(default.get("BucketKeyEnabled"))
            context = dest_arn if replica_bucket_key else replica_arn
            # "Replicating encrypted objects": kms:GenerateDataKey for plaintext objects
            # replicated into a bucket whose default encryption is SSE-KMS.
            kms_requests.append(("kms:GenerateDataKey", replica_key, context))
            if replica_bucket_key:
                kms_requests.append(("kms:Decrypt", replica_key, context))

    lock_mode, lock_until, legal_hold = _retention(key, dest)
    write_ctx: dict[str, Any] = {"s3:x-amz-storage-class": storage}
    if encryption:
        write_ctx["s3:x-amz-server-side-encryption"] = encryption
    if replica_key is not None:
        write_ctx["s3:x-amz-server-side-encryption-aws-kms-key-id"] = replica_key.arn
    if lock_mode:
        write_ctx["s3:object-lock-mode"] = lock_mode
        write_ctx["s3:object-lock-retain-until-date"] = lock_until
        until = _parse_time(lock_until)
        if until is not None:
            days = (until - datetime.datetime.now(datetime.timezone.utc)).total_seconds() / 86400
            write_ctx["s3:object-lock-remaining-retention-days"] = str(max(0, int(days + 0.999999)))
    if legal_hold:
        write_ctx["s3:object-lock-legal-hold"] = legal_hold
    attempt.s3("s3:ReplicateObject", replica_arn, dest, write_ctx)

    # "Changing the replica owner": the owner override needs s3:ObjectOwnerOverrideToBucketOwner
    # from the role and from the destination bucket's policy.
    override = ((destination.get("AccessControlTranslation") or {}).get("Owner") == "Destination")
    if override:
        attempt.s3("s3:ObjectOwnerOverrideToBucketOwner", replica_arn, dest, {})

    for action, kms_key, context in kms_requests:
        _usable(kms_key)
        attempt.kms(action, kms_key, dest.region_name, dest.partition, context)

    # Tags: "Setting up permissions for live replication": with s3:GetObjectVersionTagging on the
    # source and s3:ReplicateTags on the destination the tags go along; without, the object is
    # replicated without them.
    tags_replicated, tags_note = False, None
    if tags:
        can_read = attempt.s3("s3:GetObjectVersionTagging", object_arn, source_bucket, read_ctx, fatal=False)
        can_write = attempt.s3("s3:ReplicateTags", replica_arn, dest,
                               {**write_ctx, "s3:RequestObjectTagKeys": sorted(tags)}, fatal=False)
        tags_replicated = can_read and can_write
        if not tags_replicated:
            tags_denied = next(d for d in attempt.decisions[-2:] if not d.allowed)
            tags_note = f"tags not replicated: {tags_denied.request.action} denied ({' and '.join(tags_denied.policies)})"

    replica = _write_replica(dest_backend, dest, key, storage, encryption, replica_key, replica_bucket_key,
                             lock_mode, lock_until, legal_hold, override, tags if tags_replicated else {})
    result: dict[str, Any] = {
        "status": "COMPLETED",
        "replica": {
            "version_id": replica.version_id,
            "storage_class": replica.storage_class,
            "encryption": replica.encryption,
            "kms_key_id": replica.kms_key_id if replica.encryption in KMS_ALGORITHMS else None,
            "bucket_key_enabled": bool(replica_bucket_key),
            "object_lock_mode": replica.lock_mode,
            "object_lock_retain_until_date": replica.lock_until,
            "object_lock_legal_hold": replica.lock_legal_status,
            "owner_override": override,
            "tags_replicated": tags_replicated,
        },
        "requests": [_summary(d) for d in attempt.decisions],
    }
    if tags_note:
        result["reason"] = tags_note
        result["tags_denied"] = tags_denied.to_json()
    return result


def _parse_time(value: str | None) -> datetime.datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.timezone.utc)


def _write_replica(backend: S3Backend, dest: Any, key: FakeKey, storage: str, encryption: str | None,
                   replica_key: Any, bucket_key: bool, lock_mode: str | None, lock_until: str | None,
                   legal_hold: str | None, override: bool, tags: dict[str, str]) -> FakeKey:
    _local.replicating = True
    try:
        replica = backend.put_object(
            dest.name, key.name, key.value, storage=storage, etag=key._etag, encryption=encryption,
            kms_key_id=replica_key.arn if replica_key is not None else None,
            bucket_key_enabled=True if bucket_key else None, lock_mode=lock_mode,
            lock_legal_status=legal_hold, lock_until=lock_until, checksum_value=key.checksum_value,
        )
    finally:
        _local.replicating = False
    # put_object filled in the destination's default encryption: the replica's is decided above.
    replica.encryption = encryption
    replica.kms_key_id = replica_key.arn if replica_key is not None and encryption in KMS_ALGORITHMS else None
    replica.bucket_key_enabled = True if bucket_key else None
    # A replica keeps the source version's id and last-modified time (S3 replicates the version).
    replica._version_id = key.version_id
    replica.last_modified = key.last_modified
    replica.set_metadata(dict(key.metadata))
    replica.website_redirect_location = key.website_redirect_location
    replica.checksum_algorithm = key.checksum_algorithm
    replica.checksum_type = key.checksum_type
    replica.checksum_parts = key.checksum_parts
    # "Changing the replica owner": with the owner override the replica's ACL gives the
    # destination bucket owner full control; otherwise the source's ACL is replicated.
    replica.set_acl(get_canned_acl("private") if override else key.acl)
    if tags:
        backend.put_object_tagging(replica, tags)
    replica.replication_status = "REPLICA"
    schedule(dest, replica)  # a rule of the destination bucket logs it as SKIPPED (a replica)
    return replica


# --- hooks into moto --------------------------------------------------------------------------------


def _written() -> list[tuple[Any, FakeKey]]:
    if not hasattr(_local, "written"):
        _local.written = []
    return _local.written


def patch_put_object(resolve_kms_key: Callable[[S3Backend, Any, FakeKey], None]) -> None:
    """Every new version (PutObject, CopyObject, CompleteMultipartUpload: all call
    S3Backend.put_object) is remembered until its request is done."""
    original = S3Backend.put_object

    @functools.wraps(original)
    def put_object(self: S3Backend, bucket_name: str, key_name: str, *args: Any, **kwargs: Any) -> FakeKey:
        key = original(self, bucket_name, key_name, *args, **kwargs)
        if not getattr(_local, "replicating", False):
            bucket = self.get_bucket(bucket_name)
            resolve_kms_key(self, bucket, key)
            _written().append((bucket, key))
        return key

    S3Backend.put_object = put_object


def flush_request() -> None:
    """After a request: schedule replication for the versions it wrote (now complete: their
    metadata, tags and ACL are set) that are still there."""
    written = _written()
    if not written:
        return
    _local.written = []
    for bucket, key in written:
        try:
            if any(v is key for v in bucket.keys.getlist(key.name, [])):
                schedule(bucket, key)
        except Exception as e:  # never fail the request that wrote the object
            LOG.add({"source_bucket": getattr(bucket, "name", None), "key": getattr(key, "name", None),
                     "status": "FAILED", "reason": f"emulator error while scheduling: {e!r}"})


def patch_replication_status_header() -> None:
    """HeadObject/GetObject answer x-amz-replication-status ("Getting replication status
    information": PENDING/COMPLETED/FAILED on an eligible source version, REPLICA on a replica)."""
    original = FakeKey.response_dict.fget

    def response_dict(self: FakeKey) -> dict[str, Any]:
        res = original(self)
        status = getattr(self, "replication_status", None)
        if status:
            res["x-amz-replication-status"] = status
        return res

    FakeKey.response_dict = property(response_dict)


# --- the HTTP endpoint ------------------------------------------------------------------------------


PREFIX = "/_emulator/replication"


def _json_response(start_response: Any, status: str, body: Any) -> Iterable[bytes]:
    data = json.dumps(body, default=str).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def handle(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """``/_emulator/replication``: the log (GET, ``?bucket=&key=&since=&wait=``), DELETE to clear
    it, ``/pause`` and ``/resume`` (POST) to hold and release the worker."""
    path = environ.get("PATH_INFO", "")
    method = environ.get("REQUEST_METHOD", "GET")
    query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))

    def arg(name: str) -> str | None:
        values = query.get(name)
        return values[0] if values else None

    if path in (PREFIX, PREFIX + "/"):
        if method == "GET":
            try:
                wait = float(arg("wait") or 0)
                since = int(arg("since") or 0)
            except ValueError:
                return _json_response(start_response, "400 Bad Request", {"error": "wait and since are numbers"})
            pending = LOG.wait(min(wait, 600.0)) if wait > 0 else LOG.outstanding
            return _json_response(start_response, "200 OK", {
                "pending": pending, "paused": WORKER.paused,
                "events": LOG.events(arg("bucket"), arg("key"), since)})
        if method == "DELETE":
            return _json_response(start_response, "200 OK", {"cleared": LOG.clear()})
    if path == PREFIX + "/pause" and method == "POST":
        WORKER.pause()
        return _json_response(start_response, "200 OK", {"paused": True})
    if path == PREFIX + "/resume" and method == "POST":
        WORKER.resume()
        return _json_response(start_response, "200 OK", {"paused": False})
    return _json_response(start_response, "404 Not Found", {"error": f"no such endpoint: {method} {path}"})


class EmulatorApp:
    """Wraps moto's WSGI app: serves ``/_emulator/replication`` and schedules replication once
    each request is done (``/moto-api/`` and everything else go to moto as before)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith(PREFIX):
            return handle(environ, start_response)
        _local.written = []
        try:
            return self.app(environ, start_response)
        finally:
            flush_request()
            if path.startswith("/moto-api/reset"):
                LOG.clear()


def kms_managed_key_policy(account: str, region: str) -> str:
    """The key policy AWS gives the AWS managed key aws/s3 of an account and region."""
    partition = get_partition(region)
    return json.dumps({
        "Version": "2012-10-17",
        "Id": "auto-s3-2",
        "Statement": [
            {
                "Sid": "Allow access through S3 for all principals in the account that are authorized to use S3",
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"],
                "Resource": "*",
                "Condition": {"StringEquals": {"kms:CallerAccount": account,
                                               "kms:ViaService": f"s3.{region}.{dns_suffix(partition)}"}},
            },
            {
                "Sid": "Allow direct access to key metadata to the account",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:{partition}:iam::{account}:root"},
                "Action": ["kms:Describe*", "kms:Get*", "kms:List*"],
                "Resource": "*",
            },
        ],
    })


def resolve_object_key(backend: S3Backend, bucket: Any, key: FakeKey) -> None:
    """An SSE-KMS version records its key's ARN, as S3 does (HeadObject answers the ARN
    whichever id, alias or default wrote it; no key given: the AWS managed key aws/s3). An alias
    or bare id resolves in the requester's account (API Reference, PutBucketEncryption and
    PutObject), in the bucket's region."""
    if key.encryption not in KMS_ALGORITHMS:
        return
    try:
        key.kms_key_id = _resolve_key(key.kms_key_id, backend.account_id, bucket.region_name).arn
    except Failure:
        pass  # unknown key: kept as written (replicating it then fails, naming the key)
