#!/usr/bin/env bash
# Self-check of emulator/proxy.py: starts the emulator (emulator/server.py) and the proxy in front
# of it on free 127.0.0.1 ports, in a temp dir, then checks with the venv's AWS CLI and raw
# sockets that requests go through (keep-alive, chunked and 100-continue bodies, HEAD), that the
# latency model is applied (--delay-ms, --create-stack-delay-ms), that injected 503s and resets
# happen and the CLI's own retries get through, that /moto-api/ is never faulted, and that the
# proxy stops with exit 0 on SIGTERM. Everything it starts is stopped on exit.
# Usage: emulator/proxy_smoke.sh        (needs .venv from scripts/setup-emulator)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
py="$root/.venv/bin/python"
awscli="$root/.venv/bin/aws"
tmp="$(mktemp -d)"
server_pid=""
proxy_pid=""

stop_pid() { # stop_pid PID: SIGTERM, wait; returns the exit status
  local pid="$1" rc=0
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || rc=$?
  return "$rc"
}
cleanup() {
  stop_pid "$proxy_pid" || true
  stop_pid "$server_pid" || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
  echo "FAIL: $*" >&2
  echo "--- proxy stderr (tail) ---" >&2
  tail -n 20 "$tmp/proxy.err" >&2 2>/dev/null || true
  echo "--- server stderr (tail) ---" >&2
  tail -n 20 "$tmp/server.err" >&2 2>/dev/null || true
  exit 1
}
ok() { echo "ok - $*"; }

# wait_listening PID FILE: the URL of the one "listening on" line FILE gets (30 s at most).
wait_listening() {
  local pid="$1" file="$2" line=""
  for _ in $(seq 1 300); do
    line="$(head -n 1 "$file" 2>/dev/null || true)"
    if [[ "$line" =~ ^listening\ on\ (http://127\.0\.0\.1:[0-9]+)$ ]]; then
      echo "${BASH_REMATCH[1]}"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

start_proxy() { # start_proxy ARGS...: sets proxy_pid and endpoint
  : >"$tmp/proxy.out"
  "$py" "$root/emulator/proxy.py" --upstream "$upstream" --port 0 "$@" >"$tmp/proxy.out" 2>"$tmp/proxy.err" &
  proxy_pid=$!
  endpoint="$(wait_listening "$proxy_pid" "$tmp/proxy.out")" || fail "proxy did not start ($*)"
}

# --- the emulator and the proxy (50 ms per request, +1 s on CreateStack) ------------------------
( cd "$tmp" && exec "$py" "$root/emulator/server.py" --port 0 >"$tmp/server.out" 2>"$tmp/server.err" ) &
server_pid=$!
upstream="$(wait_listening "$server_pid" "$tmp/server.out")" || fail "emulator did not start"
ok "emulator listening on $upstream"

log="$tmp/proxy.jsonl"
start_proxy --delay-ms 50 --create-stack-delay-ms 1000 --log "$log"
ok "proxy listening on $endpoint"

export AWS_ACCESS_KEY_ID=111111111111 AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=ap-northeast-1 \
  AWS_PAGER="" AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL || true
aws() { "$awscli" --endpoint-url "$endpoint" --output json "$@"; }

# --- AWS CLI calls through the proxy --------------------------------------------------------------
bucket=proxy-smoke-111111111111
aws s3api create-bucket --bucket "$bucket" --create-bucket-configuration LocationConstraint=ap-northeast-1 >/dev/null \
  || fail "create-bucket"
head -c 200000 /dev/urandom >"$tmp/body.bin"
aws s3api put-object --bucket "$bucket" --key logs/body.bin --body "$tmp/body.bin" >/dev/null || fail "put-object"
aws s3api head-bucket --bucket "$bucket" >/dev/null || fail "head-bucket"
[ "$(aws s3api head-object --bucket "$bucket" --key logs/body.bin --query ContentLength --output text)" = 200000 ] \
  || fail "head-object ContentLength"
aws s3api get-object --bucket "$bucket" --key logs/body.bin "$tmp/back.bin" >/dev/null || fail "get-object"
cmp -s "$tmp/body.bin" "$tmp/back.bin" || fail "get-object returned other bytes than put-object stored"
ok "create-bucket, put-object (200 kB, Expect: 100-continue), head-bucket, head-object, get-object (same bytes)"

cat >"$tmp/role.yaml" <<'YAML'
AWSTemplateFormatVersion: '2010-09-09'
Resources:
  SmokeRole:
    Type: AWS::IAM::Role
    Properties:
      RoleName: ProxySmokeRole
      AssumeRolePolicyDocument:
        Version: '2012-10-17'
        Statement:
          - Effect: Allow
            Principal:
              Service: s3.amazonaws.com
            Action: sts:AssumeRole
YAML
aws cloudformation create-stack --stack-name proxy-smoke --template-body "file://$tmp/role.yaml" \
  --capabilities CAPABILITY_NAMED_IAM >/dev/null || fail "create-stack"
aws cloudformation wait stack-create-complete --stack-name proxy-smoke || fail "wait stack-create-complete"
[ "$(aws iam get-role --role-name ProxySmokeRole --query Role.RoleName --output text)" = ProxySmokeRole ] \
  || fail "the stack's role does not exist"
ok "cloudformation create-stack (AWS::IAM::Role), wait stack-create-complete, iam get-role"

# --- raw HTTP: keep-alive, a chunked request body, HEAD, pipelining -----------------------------------
"$py" - "$endpoint" "$bucket" <<'EOF' || fail "raw HTTP checks"
import socket, sys, urllib.parse
url = urllib.parse.urlsplit(sys.argv[1]); bucket = sys.argv[2]
auth = "AWS4-HMAC-SHA256 Credential=111111111111/20250101/ap-northeast-1/s3/aws4_request, SignedHeaders=host, Signature=0"
s = socket.create_connection((url.hostname, url.port), timeout=30)
f = s.makefile("rb")

def response(head_only=False):
    status = f.readline().split()[1]
    headers = {}
    while (line := f.readline()) not in (b"\r\n", b""):
        k, v = line.decode().split(":", 1)
        headers[k.strip().lower()] = v.strip()
    body = b""
    if not head_only:
        if headers.get("transfer-encoding") == "chunked":
            while (size := int(f.readline().split(b";")[0], 16)):
                body += f.read(size); f.readline()
            while f.readline() != b"\r\n":
                pass
        else:
            body = f.read(int(headers.get("content-length", "0")))
    return int(status), headers, body

payload = b"chunked-" * 1000
chunks = b"".join(b"%x\r\n%s\r\n" % (len(payload[i:i + 3000]), payload[i:i + 3000]) for i in range(0, len(payload), 3000))
s.sendall(f"PUT /{bucket}/raw/chunked HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: {auth}\r\n"
          "Transfer-Encoding: chunked\r\n\r\n".encode() + chunks + b"0\r\n\r\n")
st, _, _ = response(); assert st == 200, st
s.sendall(f"GET /{bucket}/raw/chunked HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: {auth}\r\n\r\n".encode())
st, _, body = response(); assert st == 200 and body == payload, (st, len(body))
s.sendall(f"HEAD /{bucket}/raw/chunked HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: {auth}\r\n\r\n".encode())
st, h, _ = response(head_only=True); assert st == 200 and h["content-length"] == str(len(payload)), (st, h)
# two pipelined requests, the second asking to close
s.sendall((f"HEAD /{bucket} HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: {auth}\r\n\r\n"
           f"GET /{bucket}/raw/chunked HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n").encode())
st, _, _ = response(head_only=True); assert st == 200, st
st, h, body = response(); assert st == 200 and body == payload and h.get("connection") == "close", (st, h)
assert f.read() == b"", "the connection should be closed after Connection: close"
EOF
ok "raw HTTP: chunked request body stored intact, keep-alive (5 requests on one connection), HEAD without body, pipelining, Connection: close"

# --- the latency model, from the proxy's log ------------------------------------------------------------
"$py" - "$log" <<'EOF' || fail "delays not applied (see above)"
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
assert rows, "empty log"
keys = {"t", "method", "path", "action", "status", "fault", "ms"}
assert all(keys <= r.keys() for r in rows), rows[0]
actions = {r["action"] for r in rows}
for want in ("PUT bucket", "PUT object", "HEAD bucket", "GET object", "HEAD object", "CreateStack", "DescribeStacks", "GetRole"):
    assert want in actions, (want, sorted(actions))
short = [r for r in rows if r["ms"] < 50]
assert not short, f"requests faster than the 50 ms delay: {short}"
stacks = [r for r in rows if r["action"] == "CreateStack"]
assert len(stacks) == 1 and stacks[0]["ms"] >= 1050, stacks
assert all(r["fault"] is None and r["status"] < 500 for r in rows), [r for r in rows if r["fault"] or r["status"] >= 500]
signed = [r for r in rows if r["service"]]
assert signed and all(r["key"] == "111111111111" for r in signed), [r for r in signed if r["key"] != "111111111111"]
print(f"  {len(rows)} requests logged, fastest {min(r['ms'] for r in rows):.0f} ms; CreateStack {stacks[0]['ms']:.0f} ms")
EOF
ok "every request took >= 50 ms, CreateStack >= 1050 ms (50 + 1000); each logged with its access key id"

stop_pid "$proxy_pid" || fail "proxy did not exit 0 on SIGTERM"
proxy_pid=""
[ "$(wc -l <"$tmp/proxy.out")" -eq 1 ] || fail "proxy stdout holds more than one line: $(cat "$tmp/proxy.out")"
ok "proxy stdout held exactly one line; SIGTERM -> exit 0"

# --- faults: --fail-rate 0.5 --seed 1 -------------------------------------------------------------------
flog="$tmp/faults.jsonl"
start_proxy --delay-ms 0 --fail-rate 0.5 --seed 1 --log "$flog"
# The seed fixes the draws of these sequential calls: Random(1) fails 12 of the first 23 draws,
# at most 3 in a row, so 6 attempts (the CLI's standard retry mode) get every call through.
export AWS_RETRY_MODE=standard AWS_MAX_ATTEMPTS=6
for i in 1 2; do
  aws s3api head-bucket --bucket "$bucket" >/dev/null || fail "head-bucket $i did not get through the retries"
  [ "$(aws sts get-caller-identity --query Account --output text)" = 111111111111 ] || fail "get-caller-identity $i"
done
aws s3api put-object --bucket "$bucket" --key logs/retried.bin --body "$tmp/body.bin" >/dev/null || fail "put-object with faults"
aws s3api get-object --bucket "$bucket" --key logs/retried.bin "$tmp/back2.bin" >/dev/null || fail "get-object with faults"
cmp -s "$tmp/body.bin" "$tmp/back2.bin" || fail "object differs after retried put/get"
"$py" - "$flog" <<'EOF2' || fail "no injected 503 before the calls got through"
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
faults = [r for r in rows if r["fault"] == "503"]
assert faults and all(r["status"] == 503 for r in faults), rows
print(f"  {len(rows)} requests for 6 CLI calls, {len(faults)} of them answered 503 by the proxy: "
      + " ".join(f"{r['action']}={r['status']}" for r in rows))
EOF2
ok "head-bucket, get-caller-identity (twice each), put-object and get-object succeeded through the CLI's retries"

# Without retries the CLI shows the injected error as AWS's (S3 XML and query-protocol bodies).
export AWS_MAX_ATTEMPTS=1
seen_s3="" seen_query=""
for _ in $(seq 1 30); do
  if [ -z "$seen_s3" ] && ! err="$(aws s3api get-bucket-versioning --bucket "$bucket" 2>&1 >/dev/null)"; then
    if [[ "$err" == *"(ServiceUnavailable)"*"injected"* ]]; then seen_s3=1; fi
  fi
  if [ -z "$seen_query" ] && ! err="$(aws sts get-caller-identity 2>&1 >/dev/null)"; then
    if [[ "$err" == *"(ServiceUnavailable)"*"injected"* ]]; then seen_query=1; fi
  fi
  if [ -n "$seen_s3" ] && [ -n "$seen_query" ]; then break; fi
done
[ -n "$seen_s3" ] || fail "no S3 call failed with ServiceUnavailable/injected in 30 tries"
[ -n "$seen_query" ] || fail "no STS call failed with ServiceUnavailable/injected in 30 tries"
ok "with AWS_MAX_ATTEMPTS=1 the CLI reports 'ServiceUnavailable ... injected' (S3 and query protocol)"
export AWS_MAX_ATTEMPTS=6

# /moto-api/ is never faulted.
"$py" - "$endpoint" <<'EOF' || fail "a /moto-api/ request was faulted"
import sys, urllib.request
for _ in range(20):
    req = urllib.request.Request(sys.argv[1] + "/moto-api/recorder/reset-recording", method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200
EOF
"$py" - "$flog" <<'EOF' || fail "fault log"
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
faults = [r for r in rows if r["fault"] == "503"]
assert all(r["status"] == 503 for r in faults)
assert not [r for r in rows if r["path"].startswith("/moto-api/") and r["fault"]], "moto-api faulted"
assert len([r for r in rows if r["path"].startswith("/moto-api/")]) == 20
share = len(faults) / len([r for r in rows if not r["path"].startswith("/moto-api/")])
assert 0.3 < share < 0.7, share
print(f"  {len(rows)} requests, {len(faults)} answered 503 by the proxy ({share:.0%} of the AWS requests), 20 /moto-api/ requests untouched")
EOF
ok "about half the requests got an injected 503; /moto-api/ requests are never faulted"
stop_pid "$proxy_pid" || fail "proxy (faults) did not exit 0 on SIGTERM"
proxy_pid=""

# Same seed, same sequential requests -> same fault pattern.
rlog="$tmp/repeat.jsonl"
start_proxy --delay-ms 0 --fail-rate 0.5 --seed 1 --log "$rlog"
"$py" - "$endpoint" "$flog" "$rlog" <<'EOF' || fail "--seed does not reproduce the fault sequence"
import json, sys, urllib.request, urllib.error
endpoint, first, again = sys.argv[1:]
auth = "AWS4-HMAC-SHA256 Credential=111111111111/20250101/ap-northeast-1/sts/aws4_request, SignedHeaders=host, Signature=0"
for _ in range(20):
    req = urllib.request.Request(endpoint + "/", data=b"Action=GetCallerIdentity&Version=2011-06-15",
        headers={"Content-Type": "application/x-www-form-urlencoded", "Authorization": auth})
    try:
        urllib.request.urlopen(req, timeout=30).read()
    except urllib.error.HTTPError as e:
        assert e.code == 503, e.code
        assert b"<ErrorResponse><Error><Type>Receiver</Type><Code>ServiceUnavailable</Code><Message>injected</Message>" in e.read()
pattern = lambda path: [r["fault"] for r in map(json.loads, open(path)) if not r["path"].startswith("/moto-api/")]
a, b = pattern(first), pattern(again)
n = min(len(a), len(b))
assert n >= 13 and a[:n] == b[:n], (a, b)
print(f"  the first {n} fault draws match: {' '.join(f or '-' for f in b[:n])}")
EOF
stop_pid "$proxy_pid" || fail "proxy (repeat) did not exit 0 on SIGTERM"
proxy_pid=""
ok "--seed 1 again: the requests get the same fault pattern"

# --- resets: --reset-rate 0.3 ------------------------------------------------------------------------------
xlog="$tmp/resets.jsonl"
start_proxy --delay-ms 0 --reset-rate 0.3 --seed 7 --log "$xlog"
for i in 1 2 3 4 5; do
  aws s3api head-bucket --bucket "$bucket" >/dev/null || fail "head-bucket $i did not get through resets"
done
"$py" - "$xlog" <<'EOF' || fail "no reset logged"
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
resets = [r for r in rows if r["fault"] == "reset"]
assert resets and all(r["status"] is None for r in resets), rows
print(f"  {len(rows)} requests, {len(resets)} connections reset by the proxy")
EOF
stop_pid "$proxy_pid" || fail "proxy (resets) did not exit 0 on SIGTERM"
proxy_pid=""
ok "--reset-rate 0.3: connections were reset and the CLI's retries got through"

echo "all proxy smoke checks passed"
