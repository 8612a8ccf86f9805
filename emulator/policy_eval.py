"""One IAM policy evaluator for the emulator: identity, resource (bucket, key) and trust policies.

Used by emulator/replication.py to decide each request S3 replication makes as the rule's role.
It evaluates documents the way AWS documents them and explains every decision (which policy,
which statement, which condition did not match, with which context values); it never raises on
a malformed policy (a document that does not parse allows nothing).

What AWS evaluates, and where this follows it (IAM User Guide pages, by title):

- "Policy evaluation logic" / "How AWS enforcement code logic evaluates requests": an explicit
  Deny in any applicable policy wins; otherwise something must Allow.
- "Policy evaluation for requests within a single account": within one account an Allow in
  either the identity-based or the resource-based policy is enough, except that role trust
  policies and KMS key policies must themselves allow the principal. A resource policy that
  names the role or the session grants directly; one that names the account delegates to the
  account's IAM policies ("IAM JSON policy elements: Principal", AWS account principals: "All
  identities inside the account can access the resource if they have the appropriate IAM
  permissions attached").
- "Cross-account policy evaluation logic": the identity-based policy in the principal's account
  and the resource-based policy in the resource's account must both allow.
- "Permissions boundaries for IAM entities": an identity-based Allow counts only where the
  role's permissions boundary allows too (a grant to the role ARN in a resource policy is
  limited by it as well; a grant to the session ARN is not).
- "IAM JSON policy elements: Action / NotAction / Resource / NotResource": actions match
  case-insensitively, with ``*`` and ``?``; resources case-sensitively, with ``*`` and ``?``
  (which match across ``:`` and ``/``) and policy variables ("IAM policy elements: Variables and
  tags": ``${aws:PrincipalAccount}``, ``${key, 'default'}``, ``${*}`` ``${?}`` ``${$}``; a
  variable whose key is absent, without a default, makes the element match nothing).
- "IAM JSON policy elements: Principal / NotPrincipal": ``"*"`` and ``{"AWS": "*"}``, an
  account id or its ``:root`` ARN, a role ARN (matches every session of the role), an
  assumed-role session ARN, ``{"Service": ...}``. A session's identities are its session ARN,
  its role's ARN and its account; a NotPrincipal statement excludes the session only when it
  lists all three (the page's example lists all three for exactly that reason).
- "IAM JSON policy elements: Condition operators": String*, Numeric*, Date*, Bool, BinaryEquals,
  IpAddress/NotIpAddress, Arn*, Null; the ``IfExists`` suffix (an absent key matches); a key
  absent from the request makes the condition false, except for the negated operators
  (``StringNotEquals``, ``ArnNotLike``, ...) where it is true. Condition keys are
  case-insensitive, values case-sensitive unless the operator says otherwise. An operator this
  evaluator does not know never matches (AWS refuses such a policy when it is written).
- "Conditions with multiple context keys or values": operators and keys are AND'ed; a key's
  values are OR'ed (NOR'ed for a negated operator); ``ForAnyValue:`` / ``ForAllValues:`` for
  multivalued keys (``ForAllValues`` holds for an absent or empty key, ``ForAnyValue`` does not).
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any

# --- principals -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Principal:
    """Who makes a request: an AWS principal (here, a role session) or a service."""

    kind: str  # "AWS" or "Service"
    arn: str  # the session ARN, or the service principal name (s3.amazonaws.com)
    account: str | None = None
    role_arn: str | None = None
    partition: str = "aws"

    @staticmethod
    def role_session(role_arn: str, session_name: str) -> "Principal":
        """A session of the role: ``arn:aws:sts::ACCOUNT:assumed-role/NAME/SESSION``."""
        parts = role_arn.split(":", 5)
        partition, account = parts[1], parts[4]
        name = parts[5].rsplit("/", 1)[-1]  # the session ARN carries the role's name, not its path
        arn = f"arn:{partition}:sts::{account}:assumed-role/{name}/{session_name}"
        return Principal("AWS", arn, account, role_arn, partition)

    @staticmethod
    def service(name: str) -> "Principal":
        return Principal("Service", name)

    def identities(self) -> list[str]:
        """What a NotPrincipal must list to exclude this principal."""
        if self.kind == "Service":
            return [self.arn]
        ids = [self.arn]
        if self.role_arn:
            ids.append(self.role_arn)
        if self.account:
            ids.append(f"arn:{self.partition}:iam::{self.account}:root")
        return ids


@dataclass
class Request:
    """One request to evaluate: the action, its resource, who asks, and the request context."""

    action: str
    resource: str
    principal: Principal
    context: dict[str, Any] = field(default_factory=dict)

    def lookup(self, key: str) -> Any:
        """The context value of a condition key (keys are case-insensitive), or None."""
        if key in self.context:
            return self.context[key]
        lowered = key.lower()
        for k, v in self.context.items():
            if k.lower() == lowered:
                return v
        return None


# --- results ----------------------------------------------------------------------------------


@dataclass
class ConditionMiss:
    """One condition of a statement that did not hold."""

    operator: str
    key: str
    expected: list[str]
    actual: Any

    def to_json(self) -> dict[str, Any]:
        return {"operator": self.operator, "key": self.key, "expected": self.expected, "actual": self.actual}


@dataclass
class StatementMiss:
    """A statement that names the action, resource and principal, but whose conditions fail."""

    policy: str
    statement: str
    effect: str
    conditions: list[ConditionMiss]

    def to_json(self) -> dict[str, Any]:
        return {"policy": self.policy, "statement": self.statement, "effect": self.effect,
                "conditions": [c.to_json() for c in self.conditions]}


ALLOW, DELEGATE, DENY, NONE = "allow", "delegate", "deny", "none"


@dataclass
class PolicyResult:
    """What one policy document says about a request.

    ``outcome``: ``deny`` (an explicit Deny applies), ``allow`` (an Allow grants the principal
    directly), ``delegate`` (an Allow names only the principal's account: its IAM policies must
    allow too), ``none`` (no statement allows). ``statement`` is the deciding statement's Sid
    (or ``#N``, its 0-based index); ``misses`` are the statements whose conditions failed.
    """

    policy: str
    outcome: str
    statement: str | None = None
    misses: list[StatementMiss] = field(default_factory=list)
    error: str | None = None
    role_arn_grant: bool = False  # the Allow names the role ARN (a boundary limits it)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


# --- patterns and variables -------------------------------------------------------------------

_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_SPECIAL = {"*": "*", "?": "?", "$": "$"}


class Unresolved(Exception):
    """A policy variable whose key is not in the request context (and has no default)."""


def _segments(value: str, request: Request | None) -> list[tuple[str, bool]]:
    """The value as (text, is_literal) pieces: variables become literal text."""
    out: list[tuple[str, bool]] = []
    pos = 0
    for m in _VARIABLE.finditer(value):
        out.append((value[pos:m.start()], False))
        inner = m.group(1).strip()
        if inner in _SPECIAL:
            out.append((_SPECIAL[inner], True))
        else:
            key, default = inner, None
            dm = re.match(r"^(.*?)\s*,\s*'(.*)'$", inner)
            if dm:
                key, default = dm.group(1).strip(), dm.group(2)
            resolved = request.lookup(key) if request is not None else None
            if isinstance(resolved, list):
                resolved = resolved[0] if len(resolved) == 1 else None
            if resolved is None:
                if default is None:
                    raise Unresolved(key)
                resolved = default
            out.append((str(resolved), True))
        pos = m.end()
    out.append((value[pos:], False))
    return out


def _glob_regex(value: str, request: Request | None, wildcards: bool = True) -> str:
    parts = []
    for text, literal in _segments(value, request):
        if literal or not wildcards:
            parts.append(re.escape(text))
        else:
            parts.append("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text))
    return "".join(parts)


def glob_match(pattern: str, value: str, request: Request | None = None, *, ignore_case: bool = False,
               wildcards: bool = True) -> bool:
    """Whether ``value`` matches the policy ``pattern`` (``*``, ``?``, policy variables)."""
    try:
        regex = _glob_regex(pattern, request, wildcards)
    except Unresolved:
        return False
    return re.fullmatch(regex, value, re.DOTALL | (re.IGNORECASE if ignore_case else 0)) is not None


def action_matches(pattern: str, action: str) -> bool:
    # "IAM JSON policy elements: Action": service prefix and action name are case-insensitive.
    return glob_match(pattern, action, None, ignore_case=True)


def arn_matches(pattern: str, arn: str, request: Request | None) -> bool:
    """ArnLike/ArnEquals: each of the six colon-delimited components matched on its own."""
    try:
        resolved = "".join(text for text, _ in _segments(pattern, request))
    except Unresolved:
        return False
    p_parts, a_parts = resolved.split(":", 5), arn.split(":", 5)
    if len(p_parts) != 6 or len(a_parts) != 6:
        return False
    return all(glob_match(p, a) for p, a in zip(p_parts, a_parts))


# --- condition operators ----------------------------------------------------------------------


def _parse_date(value: str) -> datetime.datetime | None:
    value = str(value).strip()
    try:
        return datetime.datetime.fromtimestamp(float(value), datetime.timezone.utc)
    except ValueError:
        pass
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.timezone.utc)


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _compare(kind: str, cmp: str):  # type: ignore[no-untyped-def]
    convert = _number if kind == "Numeric" else _parse_date

    def match(actual: Any, expected: str, request: Request) -> bool:
        a, e = convert(actual), convert(expected)
        if a is None or e is None:
            return False
        return {"Equals": a == e, "LessThan": a < e, "LessThanEquals": a <= e,
                "GreaterThan": a > e, "GreaterThanEquals": a >= e}[cmp]

    return match


def _ip_match(actual: Any, expected: str, request: Request) -> bool:
    try:
        return ipaddress.ip_address(str(actual)) in ipaddress.ip_network(expected, strict=False)
    except ValueError:
        return False


def _binary_match(actual: Any, expected: str, request: Request) -> bool:
    try:
        return base64.b64decode(str(actual)) == base64.b64decode(expected)
    except ValueError:
        return False


# name -> (positive matcher, negated?)
_OPERATORS: dict[str, tuple[Any, bool]] = {
    "StringEquals": (lambda a, e, r: glob_match(e, str(a), r, wildcards=False), False),
    "StringNotEquals": (lambda a, e, r: glob_match(e, str(a), r, wildcards=False), True),
    "StringEqualsIgnoreCase": (lambda a, e, r: glob_match(e, str(a), r, ignore_case=True, wildcards=False), False),
    "StringNotEqualsIgnoreCase": (lambda a, e, r: glob_match(e, str(a), r, ignore_case=True, wildcards=False), True),
    "StringLike": (lambda a, e, r: glob_match(e, str(a), r), False),
    "StringNotLike": (lambda a, e, r: glob_match(e, str(a), r), True),
    "Bool": (lambda a, e, r: str(a).lower() == str(e).lower(), False),
    "BinaryEquals": (_binary_match, False),
    "IpAddress": (_ip_match, False),
    "NotIpAddress": (_ip_match, True),
    # "Amazon Resource Name (ARN) condition operators": ArnEquals and ArnLike behave alike.
    "ArnEquals": (lambda a, e, r: arn_matches(e, str(a), r), False),
    "ArnLike": (lambda a, e, r: arn_matches(e, str(a), r), False),
    "ArnNotEquals": (lambda a, e, r: arn_matches(e, str(a), r), True),
    "ArnNotLike": (lambda a, e, r: arn_matches(e, str(a), r), True),
}
for _kind in ("Numeric", "Date"):
    for _cmp in ("Equals", "LessThan", "LessThanEquals", "GreaterThan", "GreaterThanEquals"):
        _OPERATORS[f"{_kind}{_cmp}"] = (_compare(_kind, _cmp), False)
    _OPERATORS[f"{_kind}NotEquals"] = (_compare(_kind, "Equals"), True)


def _condition_holds(operator: str, key: str, expected: list[str], request: Request) -> bool:
    """One (operator, key, values) triple of a Condition block."""
    set_op = None
    base = operator
    for prefix in ("ForAnyValue:", "ForAllValues:"):
        if base.startswith(prefix):
            set_op, base = prefix[:-1], base[len(prefix):]
    if_exists = base.endswith("IfExists") and base != "IfExists"
    if if_exists:
        base = base[: -len("IfExists")]
    actual = request.lookup(key)

    if base == "Null":
        # "Null condition operator": true -> the key is absent, false -> present.
        absent = actual is None or (isinstance(actual, list) and not actual)
        return any(absent == (str(e).lower() == "true") for e in expected)
    if base not in _OPERATORS:
        return False
    positive, negated = _OPERATORS[base]
    values = _as_list(actual)

    def one(value: Any) -> bool:
        hit = any(positive(value, str(e), request) for e in expected)
        return not hit if negated else hit

    if not values:
        if if_exists:
            return True
        if set_op == "ForAllValues":
            return True
        if set_op == "ForAnyValue":
            return False
        return negated
    if set_op == "ForAllValues":
        return all(one(v) for v in values)
    if set_op == "ForAnyValue" or not negated:
        return any(one(v) for v in values)
    return all(one(v) for v in values)


def evaluate_conditions(block: Any, request: Request) -> list[ConditionMiss]:
    """The conditions of a statement that do not hold (empty: the statement's conditions hold)."""
    misses: list[ConditionMiss] = []
    if not block:
        return misses
    if not isinstance(block, dict):
        return [ConditionMiss("(malformed)", "", [], None)]
    for operator, pairs in block.items():
        if not isinstance(pairs, dict):
            misses.append(ConditionMiss(operator, "(malformed)", [], None))
            continue
        for key, values in pairs.items():
            expected = [str(v).lower() if isinstance(v, bool) else str(v) for v in _as_list(values)]
            if not _condition_holds(operator, key, expected, request):
                misses.append(ConditionMiss(operator, key, expected, request.lookup(key)))
    return misses


# --- statements -------------------------------------------------------------------------------


def _principal_match(element: Any, principal: Principal) -> str | None:
    """``allow`` (grants the principal itself), ``delegate`` (names its account), or None."""
    if element == "*":
        return ALLOW
    if not isinstance(element, dict):
        return None
    best: str | None = None
    for kind, values in element.items():
        for value in _as_list(values):
            value = str(value)
            if kind == "AWS":
                if value == "*":
                    return ALLOW
                if principal.kind != "AWS":
                    continue
                if value in (principal.arn, principal.role_arn):
                    return ALLOW
                if principal.account and value in (
                        principal.account, f"arn:{principal.partition}:iam::{principal.account}:root"):
                    best = DELEGATE
            elif kind == "Service" and principal.kind == "Service" and value == principal.arn:
                return ALLOW
    return best


def _not_principal_applies(element: Any, principal: Principal) -> bool:
    if element == "*":
        return False
    listed: set[str] = set()
    if isinstance(element, dict):
        for kind, values in element.items():
            for value in _as_list(values):
                value = str(value)
                if kind == "AWS" and value == "*":
                    return False
                if kind == "AWS" and re.fullmatch(r"\d{12}", value):
                    value = f"arn:{principal.partition}:iam::{value}:root"
                listed.add(value)
    return not all(identity in listed for identity in principal.identities())


def _matches_any(patterns: Any, test) -> bool:  # type: ignore[no-untyped-def]
    return any(test(str(p)) for p in _as_list(patterns))


def statement_label(statement: dict[str, Any], index: int) -> str:
    sid = statement.get("Sid")
    return str(sid) if sid else f"#{index}"


def evaluate_policy(document: Any, request: Request, name: str, *, resource_policy: bool) -> PolicyResult:
    """What one policy says about the request.

    ``resource_policy``: the document has Principal/NotPrincipal elements (bucket, key and trust
    policies); an identity-based policy applies to the principal it is attached to.
    """
    if isinstance(document, (bytes, bytearray)):
        document = document.decode("utf-8", "replace")
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError as e:
            return PolicyResult(name, NONE, error=f"malformed policy: {e}")
    if not isinstance(document, dict):
        return PolicyResult(name, NONE, error="malformed policy: not a JSON object")
    statements = _as_list(document.get("Statement"))
    result = PolicyResult(name, NONE)
    best_rank = -1
    for index, statement in enumerate(statements):
        if not isinstance(statement, dict):
            continue
        label = statement_label(statement, index)
        effect = statement.get("Effect")
        if "Action" in statement:
            if not _matches_any(statement["Action"], lambda p: action_matches(p, request.action)):
                continue
        elif "NotAction" in statement:
            if _matches_any(statement["NotAction"], lambda p: action_matches(p, request.action)):
                continue
        else:
            continue
        if "Resource" in statement:
            if not _matches_any(statement["Resource"], lambda p: glob_match(p, request.resource, request)):
                continue
        elif "NotResource" in statement:
            if _matches_any(statement["NotResource"], lambda p: glob_match(p, request.resource, request)):
                continue
        # A trust policy has no Resource: it is the role's own policy.
        grant = ALLOW
        if resource_policy:
            if "Principal" in statement:
                grant = _principal_match(statement["Principal"], request.principal)
                if grant is None:
                    continue
            elif "NotPrincipal" in statement:
                if not _not_principal_applies(statement["NotPrincipal"], request.principal):
                    continue
            else:
                continue
        misses = evaluate_conditions(statement.get("Condition"), request)
        if misses:
            result.misses.append(StatementMiss(name, label, str(effect), misses))
            continue
        if effect == "Deny":
            return PolicyResult(name, DENY, label, result.misses)
        if effect == "Allow":
            # A direct grant beats a delegation to the account; a grant to the session (or to
            # everyone) beats one to the role ARN, which a permissions boundary limits.
            role_arn_grant = bool(resource_policy and grant == ALLOW and request.principal.role_arn
                                  and _names(statement.get("Principal"), request.principal.role_arn))
            rank = 0 if grant == DELEGATE else 1 if role_arn_grant else 2
            if rank > best_rank:
                best_rank = rank
                result.outcome, result.statement, result.role_arn_grant = grant, label, role_arn_grant
    return result


def _names(element: Any, arn: str) -> bool:
    return isinstance(element, dict) and arn in [str(v) for v in _as_list(element.get("AWS"))]


# --- decisions ----------------------------------------------------------------------------------


@dataclass
class Decision:
    """Whether a request is allowed, and if not, why (the first reason AWS would give)."""

    allowed: bool
    request: Request
    results: list[PolicyResult]
    reason: str = ""  # "explicit deny" / "no statement allows"
    policies: list[str] = field(default_factory=list)  # the policies that decided a denial
    statement: str | None = None

    def to_json(self) -> dict[str, Any]:
        misses = [m.to_json() for r in self.results for m in r.misses if m.effect == "Allow"]
        out: dict[str, Any] = {
            "action": self.request.action,
            "resource": self.request.resource,
            "principal": self.request.principal.arn,
            "allowed": self.allowed,
        }
        if self.request.principal.role_arn:
            out["principal_role"] = self.request.principal.role_arn
        if not self.allowed:
            out["reason"] = self.reason
            out["policy"] = " and ".join(self.policies)
            out["policies"] = list(self.policies)
            if self.statement is not None:
                out["statement"] = self.statement
            out["unmatched"] = misses
        out["evaluated"] = [{"policy": r.policy, "outcome": r.outcome, **({"statement": r.statement} if r.statement else {}),
                             **({"error": r.error} if r.error else {})} for r in self.results]
        out["context"] = dict(self.request.context)
        return out


def decide(request: Request, *, identity: list[tuple[str, Any]], identity_label: str,
           resource: tuple[str, Any] | None, resource_account: str | None, kind: str,
           boundary: tuple[str, Any] | None = None) -> Decision:
    """Evaluate a request as AWS does, over every policy that applies to it.

    ``identity``: (name, document) of each identity-based policy of the principal (inline and
    attached managed); ``identity_label`` names them together (for "no statement allows").
    ``resource``: (name, document) of the resource-based policy, or None (no bucket policy).
    ``kind``: ``s3`` (a resource policy is optional within one account), ``kms`` (the key
    policy must allow: "Key policies in AWS KMS", "Default key policy": a statement naming the
    account lets IAM policies decide) or ``trust`` (the role's trust policy alone decides
    whether a service may assume it).
    """
    principal = request.principal
    results: list[PolicyResult] = []
    id_results = [evaluate_policy(doc, request, name, resource_policy=False) for name, doc in identity]
    if kind != "trust":
        results.extend(id_results)
    b_result = evaluate_policy(boundary[1], request, boundary[0], resource_policy=False) if boundary else None
    if b_result:
        results.append(b_result)
    if resource is not None:
        r_result = evaluate_policy(resource[1], request, resource[0], resource_policy=True)
        results.append(r_result)
    else:
        r_result = None

    for r in results:
        if r.outcome == DENY:
            return Decision(False, request, results, "explicit deny", [r.policy], r.statement)

    boundary_ok = b_result is None or b_result.outcome == ALLOW
    identity_allows = kind != "trust" and boundary_ok and any(r.outcome == ALLOW for r in id_results)
    r_outcome = r_result.outcome if r_result else NONE
    same_account = principal.account is not None and principal.account == resource_account
    # A resource policy's grant to the role ARN is limited by the boundary; to the session, not.
    r_direct = r_outcome == ALLOW and (boundary_ok or not r_result.role_arn_grant)  # type: ignore[union-attr]

    def denied(policies: list[str]) -> Decision:
        return Decision(False, request, results, "no statement allows", policies)

    identity_names = [identity_label] if boundary_ok else [b_result.policy]  # type: ignore[union-attr]
    if kind == "trust":
        if r_outcome == ALLOW or (r_outcome == DELEGATE and identity_allows):
            return Decision(True, request, results)
        return denied([resource[0] if resource else "trust policy (none)"])
    if kind == "kms":
        if r_outcome == NONE:
            return denied([resource[0] if resource else "key policy (none)"])
        if r_direct and same_account:
            return Decision(True, request, results)
        if identity_allows:
            return Decision(True, request, results)
        return denied(identity_names)
    # S3
    if same_account:
        if identity_allows or r_direct:
            return Decision(True, request, results)
        names = identity_names + ([resource[0]] if resource else [])
        return denied(names)
    resource_allows = r_outcome in (ALLOW, DELEGATE)
    if identity_allows and resource_allows:
        return Decision(True, request, results)
    missing = ([] if identity_allows else identity_names) + \
        ([] if resource_allows else [resource[0] if resource else f"bucket policy (none) of account {resource_account}"])
    return denied(missing)
