#!/usr/bin/env bash
# wtd interop suite: real WebTransport peers against wtd's C example programs.
#
#   tests/interop/run.sh                 run every case against wtd_echo_server / wtd_echo_client
#   tests/interop/run.sh --self-check    run the same cases with wtd replaced by peers (proves the harness)
#   tests/interop/run.sh --list          list case names
#   tests/interop/run.sh CASE...         run only the named cases
#
# Environment:
#   WTD_BIN_DIR            where wtd_echo_server / wtd_echo_client are (default <repo>/build/examples-c)
#   WTD_INTEROP_CACHE      installed peers (default <repo>/build/interop-cache; filled by setup.sh)
#   WTD_INTEROP_WORK       logs of this run (default <repo>/build/interop-run)
#   WTD_INTEROP_SKIP_SETUP=1   do not run setup.sh
#   WTD_CLIENT_TRUST       how wtd_echo_client trusts peer certs: hash (default, --cert-hash) | ca (--ca) | insecure
#   WTD_INTEROP_SELF_CHECK=1   same as --self-check
#   WTD_ARTIFACTS_DIR      where cases keep artifacts (default <repo>/build/artifacts; browser_demo.png)
#
# Output: one "=== RUN <case>" and one "--- PASS|FAIL <case> (<draft>) <result>" per case, logs of a failed
# case printed, and finally a line "N passed, M failed". Exit status 1 if any case failed.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
export WTD_INTEROP_CACHE="${WTD_INTEROP_CACHE:-$REPO/build/interop-cache}"
CACHE="$WTD_INTEROP_CACHE"
WTD_BIN_DIR="${WTD_BIN_DIR:-$REPO/build/examples-c}"
WORK="${WTD_INTEROP_WORK:-$REPO/build/interop-run}"
SELF_CHECK="${WTD_INTEROP_SELF_CHECK:-0}"
WTD_CLIENT_TRUST="${WTD_CLIENT_TRUST:-hash}"

PY312="$CACHE/py312/bin/python"
PY311="$CACHE/py311/bin/python"

ALL_CASES=(chromium_echo chromium_multi_session pywt021_client_to_wtd_server wtd_client_to_pywt021_server
           wtd_client_to_aioquic_server pywt061_client_to_wtd_server
           pywt061_structured_to_wtd_structured pywt061_reliability_wire_format
           pywt021_multi_session_one_connection browser_demo)
# run only when named: structured datagrams (pywebtransport 0.6.1 StructuredDatagramTransport) through the echo server
EXTRA_CASES=(pywt061_structured_to_wtd_server)

SELECTED=()
for arg in "$@"; do
  case "$arg" in
    --self-check) SELF_CHECK=1 ;;
    --list) printf '%s\n' "${ALL_CASES[@]}"; printf '%s (only when named)\n' "${EXTRA_CASES[@]}"; exit 0 ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "unknown option $arg" >&2; exit 2 ;;
    *) SELECTED+=("$arg") ;;
  esac
done
if [ ${#SELECTED[@]} -eq 0 ]; then
  SELECTED=("${ALL_CASES[@]}")
  # browser_demo tests wtd's own demo program: no peer stands in for it, so self-check leaves it out.
  if [ "$SELF_CHECK" = 1 ]; then
    SELECTED=("${SELECTED[@]/browser_demo}")
    read -r -a SELECTED <<<"${SELECTED[*]}"
  fi
fi
ARTIFACTS="${WTD_ARTIFACTS_DIR:-$REPO/build/artifacts}"

# ------------------------------------------------------------------------------------------------
if [ "${WTD_INTEROP_SKIP_SETUP:-0}" != 1 ]; then
  if ! "$HERE/setup.sh"; then
    echo "setup.sh failed"; echo "0 passed, ${#SELECTED[@]} failed"; exit 1
  fi
fi

rm -rf "$WORK"; mkdir -p "$WORK"
CERT="$WORK/peer-cert.pem"; KEY="$WORK/peer-key.pem"
PEER_HASH="$("$PY311" "$HERE/gen_cert.py" --cert "$CERT" --key "$KEY")" || { echo "cert generation failed"; exit 1; }

if [ "$SELF_CHECK" = 1 ]; then
  echo "MODE: self-check (wtd replaced by peers: aioquic / pywt021 servers, pywt021 / pywt061 clients)"
else
  echo "MODE: wtd (WTD_BIN_DIR=$WTD_BIN_DIR)"
fi
sed 's/^/VERSION /' "$CACHE/VERSIONS.txt" 2>/dev/null

# ---------------------------------------------------------------- helpers (used inside a case's subshell)
PIDS=()
CASE_DIR=""
SUMMARY=""   # one-line result of the case
DRAFT="?"

fail() { echo "    FAIL: $*"; echo "$*" > "$CASE_DIR/failure"; exit 1; }
note() { echo "    $*"; }

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
  done
}

# start_server NAME TIMEOUT_S CMD... : run in background, wait for "READY <port> [hash]".
# Sets SERVER_PID SERVER_PORT SERVER_HASH SERVER_LOG.
start_server() {
  local name="$1" limit="$2"; shift 2
  SERVER_LOG="$CASE_DIR/$name.log"
  note "start $name: $*"
  timeout -k 5 "$limit" "$@" > "$SERVER_LOG" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  local line=""
  for _ in $(seq 1 200); do
    line="$(grep -m1 -E '^READY [0-9]+' "$SERVER_LOG" 2>/dev/null)"
    [ -n "$line" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$line" ] || { show_log "$SERVER_LOG"; fail "$name did not print READY within 20 s"; }
  SERVER_PORT="$(echo "$line" | awk '{print $2}')"
  SERVER_HASH="$(echo "$line" | awk '{print $3}')"
  note "$name ready on port $SERVER_PORT${SERVER_HASH:+ cert sha256 $SERVER_HASH}"
}

# stop_server: SIGTERM, expect a clean exit within 5 s.
stop_server() {
  kill -TERM "$SERVER_PID" 2>/dev/null
  local rc=""
  for _ in $(seq 1 50); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then wait "$SERVER_PID"; rc=$?; break; fi
    sleep 0.1
  done
  if [ -z "$rc" ]; then
    kill -KILL "$SERVER_PID" 2>/dev/null
    show_log "$SERVER_LOG"
    fail "server did not exit within 5 s of SIGTERM"
  fi
  note "server exited rc=$rc after SIGTERM"
  [ "$rc" = 0 ] || [ "$rc" = 143 ] || { show_log "$SERVER_LOG"; fail "server exit status $rc after SIGTERM"; }
}

show_log() { echo "    ---- $(basename "$1") (last 40 lines) ----"; tail -n 40 "$1" 2>/dev/null | sed 's/^/    | /'; }

# run_client NAME TIMEOUT_S CMD... : run to completion; sets CLIENT_RC CLIENT_JSON (last JSON line) CLIENT_LOG.
run_client() {
  local name="$1" limit="$2"; shift 2
  CLIENT_LOG="$CASE_DIR/$name.log"
  note "run $name: $*"
  timeout -k 5 "$limit" "$@" > "$CLIENT_LOG" 2> "$CLIENT_LOG.stderr"
  CLIENT_RC=$?
  CLIENT_JSON="$(grep -E '^\{' "$CLIENT_LOG" | tail -n1)"
  note "$name rc=$CLIENT_RC result: ${CLIENT_JSON:-<no JSON line>}"
  if [ "$CLIENT_RC" != 0 ] || [ -z "$CLIENT_JSON" ]; then
    show_log "$CLIENT_LOG"; show_log "$CLIENT_LOG.stderr"
  fi
}

# jget JSON EXPR : evaluate a python expression on the parsed object `j`.
jget() { "$PY311" -c 'import json,sys; j=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2" 2>/dev/null; }

# wait_for_log FILE REGEX COUNT [SECONDS] : wait until FILE has COUNT lines matching REGEX.
wait_for_log() {
  local file="$1" re="$2" want="$3" secs="${4:-5}" n=0
  for _ in $(seq 1 $((secs * 10))); do
    n="$(grep -cE "$re" "$file" 2>/dev/null)"
    [ "${n:-0}" -ge "$want" ] && return 0
    sleep 0.1
  done
  return 1
}

# server_draft: draft= of the first SESSION_OPEN line in the server log.
server_draft() { grep -m1 -oE 'SESSION_OPEN .*draft=[^ ]+' "$SERVER_LOG" | grep -oE 'draft=[^ ]+' | cut -d= -f2; }

# check_server_sessions N EXPECTED_DRAFT : N SESSION_OPEN lines with that draft and N SESSION_CLOSED code=42 reason=bye
check_server_sessions() {
  local want="$1" expect_draft="$2"
  wait_for_log "$SERVER_LOG" '^.*SESSION_OPEN id=' "$want" 3 || { show_log "$SERVER_LOG"; fail "server log: expected $want SESSION_OPEN line(s)"; }
  DRAFT="$(server_draft)"
  local drafts; drafts="$(grep -oE 'SESSION_OPEN .*draft=[^ ]+' "$SERVER_LOG" | grep -oE 'draft=[^ ]+' | sort | uniq -c | tr -s ' ' | tr '\n' ',')"
  note "server saw sessions: ${drafts:-<no draft= field>}"
  if [ -n "$expect_draft" ] && [ "$DRAFT" != "$expect_draft" ]; then
    show_log "$SERVER_LOG"; fail "server negotiated draft '${DRAFT:-none}', expected $expect_draft"
  fi
  if ! wait_for_log "$SERVER_LOG" 'SESSION_CLOSED id=[0-9]+ code=42 reason=bye( |$)' "$want" 5; then
    show_log "$SERVER_LOG"
    fail "server log: expected $want 'SESSION_CLOSED ... code=42 reason=bye' line(s), got: $(grep -E 'SESSION_CLOSED' "$SERVER_LOG" | tr '\n' ';')"
  fi
  note "server saw $want close(s) with code=42 reason=bye"
}

# ---------------------------------------------------------------- server / client under test
# start_sut_server PEER_HINT : wtd_echo_server (or, in self-check, a peer server that PEER_HINT's client can use)
# Sets SUT_HASH (cert hash for Chromium) and EXPECT_DRAFT.
start_sut_server() {
  local hint="$1"
  if [ "$SELF_CHECK" = 1 ]; then
    case "$hint" in
      pywt021) start_server pywt021_server 120 "$PY312" "$HERE/pywt021_server.py" --cert "$CERT" --key "$KEY"; EXPECT_DRAFT=draft-15 ;;
      *)       start_server aioquic_server 120 "$PY311" "$HERE/aioquic_echo_server.py" --cert "$CERT" --key "$KEY"; EXPECT_DRAFT=draft-02 ;;
    esac
    SUT_HASH="$PEER_HASH"
  else
    [ -x "$WTD_BIN_DIR/wtd_echo_server" ] || fail "$WTD_BIN_DIR/wtd_echo_server not found (build wtd first or set WTD_BIN_DIR)"
    start_server wtd_echo_server 120 "$WTD_BIN_DIR/wtd_echo_server" --host 127.0.0.1 --port 0
    SUT_HASH="$SERVER_HASH"
    [ -n "$SUT_HASH" ] || fail "wtd_echo_server READY line has no certificate hash"
    case "$hint" in
      chromium) EXPECT_DRAFT=draft-02 ;;
      pywt021)  EXPECT_DRAFT=draft-15 ;;
      pywt061)  EXPECT_DRAFT=draft-13 ;;
    esac
  fi
}

# run_sut_client URL EXPECTED_DRAFT : wtd_echo_client (or, in self-check, a peer client)
run_sut_client() {
  local url="$1"
  if [ "$SELF_CHECK" = 1 ]; then
    case "$url" in
      *pywt021*) run_client pywt021_client 60 "$PY312" "$HERE/pywt021_client.py" "$url" ;;
      *)         run_client pywt061_client 60 "$PY311" "$HERE/pywt061_client.py" "$url" ;;
    esac
  else
    [ -x "$WTD_BIN_DIR/wtd_echo_client" ] || fail "$WTD_BIN_DIR/wtd_echo_client not found (build wtd first or set WTD_BIN_DIR)"
    local trust=()
    case "$WTD_CLIENT_TRUST" in
      hash) trust=(--cert-hash "$PEER_HASH") ;;
      ca) trust=(--ca "$CERT") ;;
      insecure) trust=(--insecure) ;;
      *) fail "bad WTD_CLIENT_TRUST=$WTD_CLIENT_TRUST" ;;
    esac
    run_client wtd_echo_client 60 "$WTD_BIN_DIR/wtd_echo_client" "$url" --count 100 --size 100 "${trust[@]}"
  fi
}

# ---------------------------------------------------------------- cases
case_chromium_echo() {
  start_sut_server chromium
  run_client chromium_driver 60 node "$HERE/chromium/chromium_driver.mjs" \
    --url "https://127.0.0.1:$SERVER_PORT/echo" --hash "$SUT_HASH" --mode echo --timeout 45
  [ "$CLIENT_RC" = 0 ] || fail "Chromium page: $(jget "$CLIENT_JSON" 'j.get("error") or j')"
  [ "$(jget "$CLIENT_JSON" 'j["closedInfo"]')" = "{'closeCode': 42, 'reason': 'bye'}" ] ||
    fail "wt.closed resolved with $(jget "$CLIENT_JSON" 'j.get("closedInfo")'), expected closeCode 42 reason bye"
  check_server_sessions 1 "$EXPECT_DRAFT"
  stop_server
  SUMMARY="$(jget "$CLIENT_JSON" '"sent=%s received=%s sizes=%s maxDatagramSize=%s resent=%s rtt_p50_ms=%s closed=%s/%s chromium=%s" % (j["sent"], j["received"], j["sizes"], j["maxDatagramSize"], j["resent"], j["rttP50Ms"], j["closedInfo"]["closeCode"], j["closedInfo"]["reason"], j.get("browserVersion")) ')"
}

case_chromium_multi_session() {
  start_sut_server chromium
  run_client chromium_driver 60 node "$HERE/chromium/chromium_driver.mjs" \
    --url "https://127.0.0.1:$SERVER_PORT/multi" --hash "$SUT_HASH" --mode multi --sessions 3 --timeout 45
  [ "$CLIENT_RC" = 0 ] || fail "Chromium page: $(jget "$CLIENT_JSON" 'j.get("error") or [(s["session"], s["received"], s["sent"], s["foreign"], s.get("missingSizes")) for s in j["sessions"]]')"
  check_server_sessions 3 "$EXPECT_DRAFT"
  stop_server
  SUMMARY="$(jget "$CLIENT_JSON" '"sessions=%d per-session received/sent=%s foreign=%d closed=%s" % (len(j["sessions"]), ",".join("%d/%d" % (s["received"], s["sent"]) for s in j["sessions"]), sum(s["foreign"] for s in j["sessions"]), ",".join("%s/%s" % (s["closedInfo"]["closeCode"], s["closedInfo"]["reason"]) for s in j["sessions"])) ')"
}

case_pywt021_client_to_wtd_server() {
  start_sut_server pywt021
  run_client pywt021_client 60 "$PY312" "$HERE/pywt021_client.py" "https://127.0.0.1:$SERVER_PORT/echo"
  [ "$CLIENT_RC" = 0 ] || fail "pywt021 client: $(jget "$CLIENT_JSON" 'j.get("error") or j')"
  check_server_sessions 1 "$EXPECT_DRAFT"
  stop_server
  SUMMARY="$(jget "$CLIENT_JSON" '"sent=%s received=%s sizes=%s max_datagram=%s resent=%s rtt_p50_us=%s closed=42/bye" % (j["sent"], j["received"], j["sizes"], j["max_datagram"], j["resent"], j["rtt_p50_us"])')"
}

# pywebtransport 0.21.1 opens 3 sessions on ONE connection (connection.create_session); each gets only its own
# echoes. The server log must show 3 distinct session ids (CONNECT stream ids 0, 4, 8 on one connection).
case_pywt021_multi_session_one_connection() {
  start_sut_server pywt021
  run_client pywt021_multi_client 60 "$PY312" "$HERE/pywt021_multi_client.py" "https://127.0.0.1:$SERVER_PORT/multi"
  [ "$CLIENT_RC" = 0 ] || fail "pywt021 multi-session client: $(jget "$CLIENT_JSON" 'j.get("error") or j')"
  check_server_sessions 3 "$EXPECT_DRAFT"
  if [ "$SELF_CHECK" != 1 ]; then
    local ids; ids="$(grep -oE 'SESSION_OPEN id=[0-9]+' "$SERVER_LOG" | sort -u | wc -l)"
    [ "$ids" = 3 ] || fail "expected 3 distinct session ids on one connection, got $ids"
  fi
  stop_server
  SUMMARY="$(jget "$CLIENT_JSON" '"sessions=%d same_connection=%s per-session received/sent=%s foreign=%d" % (len(j["sessions"]), j["same_connection"], ",".join("%d/%d" % (r["received"], r["sent"]) for r in j["sessions"]), sum(r["foreign"] for r in j["sessions"]))')"
}

case_pywt061_client_to_wtd_server() {
  start_sut_server pywt061
  run_client pywt061_client 60 "$PY311" "$HERE/pywt061_client.py" "https://127.0.0.1:$SERVER_PORT/echo"
  [ "$CLIENT_RC" = 0 ] || fail "pywt061 client: $(jget "$CLIENT_JSON" 'j.get("error") or j')"
  check_server_sessions 1 "$EXPECT_DRAFT"
  stop_server
  SUMMARY="$(jget "$CLIENT_JSON" '"sent=%s received=%s sizes=%s resent=%s rtt_p50_us=%s closed=42/bye (raw capsule)" % (j["sent"], j["received"], j["sizes"], j["resent"], j["rtt_p50_us"])')"
}

case_pywt061_structured_to_wtd_server() {
  start_sut_server pywt061
  run_client pywt061_client 60 "$PY311" "$HERE/pywt061_client.py" --mode structured "https://127.0.0.1:$SERVER_PORT/structured"
  [ "$CLIENT_RC" = 0 ] || fail "pywt061 structured client: $(jget "$CLIENT_JSON" 'j.get("error") or j')"
  check_server_sessions 1 "$EXPECT_DRAFT"
  stop_server
  SUMMARY="$(jget "$CLIENT_JSON" '"objects=%s received=%s mismatches=%s closed=42/bye" % (j["objects"], j["received"], j["mismatches"])')"
}

# pywebtransport 0.6.1 StructuredDatagramTransport against wtd_structured_echo (wtd_structured_*: types 1 and 2
# registered, pass-through serializer): registered objects round-trip; an unknown type id and a 1-byte datagram are
# not echoed but counted (server exit line "STATS ... unknown=2"). Self-check: the peer echo server instead.
case_pywt061_structured_to_wtd_structured() {
  if [ "$SELF_CHECK" = 1 ]; then
    start_sut_server pywt061
    run_client pywt061_client 60 "$PY311" "$HERE/pywt061_client.py" --mode structured "https://127.0.0.1:$SERVER_PORT/structured"
    [ "$CLIENT_RC" = 0 ] || fail "pywt061 structured client: $(jget "$CLIENT_JSON" 'j.get("error") or j')"
    stop_server
    SUMMARY="$(jget "$CLIENT_JSON" '"objects=%s received=%s mismatches=%s (peer echo server)" % (j["objects"], j["received"], j["mismatches"])')"
    return
  fi
  [ -x "$WTD_BIN_DIR/wtd_structured_echo" ] || fail "$WTD_BIN_DIR/wtd_structured_echo not found (build wtd first or set WTD_BIN_DIR)"
  start_server wtd_structured_echo 120 "$WTD_BIN_DIR/wtd_structured_echo" --host 127.0.0.1 --port 0
  run_client pywt061_structured_client 60 "$PY311" "$HERE/pywt061_structured_client.py" "https://127.0.0.1:$SERVER_PORT/structured"
  [ "$CLIENT_RC" = 0 ] || fail "pywt061 structured client: $(jget "$CLIENT_JSON" 'j.get("error") or "objects=%s received=%s mismatches=%s unknown_echoed=%s" % (j.get("objects"), j.get("received"), j.get("mismatches"), j.get("unknown_echoed"))')"
  check_server_sessions 1 draft-13
  stop_server
  local stats; stats="$(grep -m1 -E '^STATS ' "$SERVER_LOG")"
  note "server: ${stats:-<no STATS line>}"
  echo "$stats" | grep -qE ' unknown=2( |$)' || { show_log "$SERVER_LOG"; fail "server should count 2 unknown/short datagrams: ${stats:-no STATS line}"; }
  echo "$stats" | grep -qE ' failed=0( |$)' || { show_log "$SERVER_LOG"; fail "server echo failures: $stats"; }
  SUMMARY="$(jget "$CLIENT_JSON" '"objects=%s received=%s mismatches=%s unknown_sent=%s unknown_echoed=%d" % (j["objects"], j["received"], j["mismatches"], j["unknown_sent"], len(j["unknown_echoed"]))') server:${stats#STATS }"
}

# Reliability wire format: the frames pywebtransport 0.6.1's DatagramReliabilityLayer builds (its own code, driven
# by pywt061_reliability_wire.py) must equal wtd's, captured on the wire by wtd_reliable_demo --print-wire:
# DATA seq 7 "hi" = 04 "DATA" 00000007 "hi", ACK 1234 = 03 "ACK" "1234" (pinned by src/datagram/reliability.rs),
# and pywebtransport must parse wtd's frames. Self-check: the pinned bytes stand in for wtd's.
case_pywt061_reliability_wire_format() {
  local want_data="0444415441000000076869" want_ack="0341434b31323334" wtd_data wtd_ack py_data py_ack
  DRAFT="n/a"
  if [ "$SELF_CHECK" = 1 ]; then
    wtd_data="$want_data"; wtd_ack="$want_ack"
    note "self-check: the pinned bytes stand in for wtd's frames"
  else
    [ -x "$WTD_BIN_DIR/wtd_reliable_demo" ] || fail "$WTD_BIN_DIR/wtd_reliable_demo not found (build wtd first or set WTD_BIN_DIR)"
    run_client wtd_reliable_demo 30 "$WTD_BIN_DIR/wtd_reliable_demo" --print-wire
    [ "$CLIENT_RC" = 0 ] || fail "wtd_reliable_demo --print-wire exit status $CLIENT_RC"
    wtd_data="$(jget "$CLIENT_JSON" 'j["data_hex"]')"; wtd_ack="$(jget "$CLIENT_JSON" 'j["ack_hex"]')"
    [ "$wtd_data" = "$want_data" ] || fail "wtd's DATA(7, \"hi\") frame is ${wtd_data:-missing}, pinned $want_data"
    [ "$wtd_ack" = "$want_ack" ] || fail "wtd's ACK(1234) frame is ${wtd_ack:-missing}, pinned $want_ack"
  fi
  run_client pywt061_reliability_wire 30 "$PY311" "$HERE/pywt061_reliability_wire.py" --wtd-data "$wtd_data" --wtd-ack "$wtd_ack"
  py_data="$(jget "$CLIENT_JSON" 'j["data_hex"]')"; py_ack="$(jget "$CLIENT_JSON" 'j["ack_hex"]')"
  [ "$py_data" = "$wtd_data" ] || fail "DATA(7, \"hi\"): pywebtransport 0.6.1 builds ${py_data:-nothing}, wtd $wtd_data"
  [ "$py_ack" = "$wtd_ack" ] || fail "ACK(1234): pywebtransport 0.6.1 builds ${py_ack:-nothing}, wtd $wtd_ack"
  [ "$CLIENT_RC" = 0 ] || fail "pywebtransport 0.6.1 did not parse wtd's frames: $(jget "$CLIENT_JSON" 'j.get("error") or "parsed_data=%s parsed_ack=%s" % (j.get("parsed_data"), j.get("parsed_ack"))')"
  SUMMARY="DATA(7,hi)=$wtd_data ACK(1234)=$wtd_ack identical in both; pywebtransport parsed wtd's DATA and ACK"
}

# examples-c/wtd_browser_demo driven through its own page in two headless Chromium tabs
# (chromium/browser_demo_driver.mjs): both connect, each sees the other's chat message (broadcast by
# the server), the chart has >= 6 points with RTT and datagrams/s; the screenshot of the first tab
# is kept as $ARTIFACTS/browser_demo.png. The server log must show 2 JOINs (draft-02, Chromium),
# 2 broadcasts that reached both tabs and 2 LEAVEs with the tabs' close code 42/"bye".
case_browser_demo() {
  [ "$SELF_CHECK" != 1 ] || fail "browser_demo has no self-check variant (no peer stands in for wtd_browser_demo)"
  [ -x "$WTD_BIN_DIR/wtd_browser_demo" ] || fail "$WTD_BIN_DIR/wtd_browser_demo not found (build wtd first or set WTD_BIN_DIR)"
  local shot="$ARTIFACTS/browser_demo.png" page_url
  rm -f "$shot"
  start_server wtd_browser_demo 120 "$WTD_BIN_DIR/wtd_browser_demo" --host 127.0.0.1 --port 0 --http-port 0
  page_url="$(grep -m1 -oE '^PAGE http://[^ ]+' "$SERVER_LOG" | cut -d' ' -f2)"
  [ -n "$page_url" ] || { show_log "$SERVER_LOG"; fail "wtd_browser_demo printed no 'PAGE <url>' line"; }
  note "page: $page_url"
  run_client browser_demo_driver 90 node "$HERE/chromium/browser_demo_driver.mjs" \
    --page "$page_url" --screenshot "$shot" --timeout 60
  [ "$CLIENT_RC" = 0 ] || fail "browser demo: $(jget "$CLIENT_JSON" 'j.get("error") or j')"
  wait_for_log "$SERVER_LOG" '^JOIN player=' 2 3 || { show_log "$SERVER_LOG"; fail "server log: expected 2 JOIN lines"; }
  DRAFT="$(grep -m1 -oE '^JOIN .*draft=[^ ]+' "$SERVER_LOG" | grep -oE 'draft=[^ ]+' | cut -d= -f2)"
  [ "$DRAFT" = draft-02 ] || { show_log "$SERVER_LOG"; fail "server negotiated ${DRAFT:-no draft} with Chromium, expected draft-02"; }
  local both; both="$(grep -cE '^MSG player=[0-9]+ id=[0-9]+ accepted=2 failed=0 result=ok ' "$SERVER_LOG")"
  [ "${both:-0}" -ge 2 ] || { show_log "$SERVER_LOG"; fail "server log: expected 2 chat broadcasts accepted by both tabs, got ${both:-0}"; }
  wait_for_log "$SERVER_LOG" '^LEAVE player=[0-9]+ code=42 reason=bye ' 2 5 ||
    { show_log "$SERVER_LOG"; fail "server log: expected 2 'LEAVE ... code=42 reason=bye' lines after the tabs closed their sessions"; }
  stop_server
  local stats; stats="$(grep -E '^STATS ' "$SERVER_LOG" | tail -n1)"
  note "server: ${stats:-<no STATS line>}"
  echo "$stats" | grep -qE ' dropped_unknown=0 dropped_bad_message=0 ' || { show_log "$SERVER_LOG"; fail "server dropped datagrams: $stats"; }
  [ -s "$shot" ] || fail "no screenshot at $shot"
  SUMMARY="$(jget "$CLIENT_JSON" '"sessions=%s messages seen per tab=%s points=%s rtt_ms=%.2f/%.2f dps=%s/%s loss=%s/%s chart_pixels=%s chromium=%s" % (",".join(j["sessions"]), ",".join(str(len(m)) for m in j["messages"]), ",".join(str(t["points"]) for t in j["tabs"]), j["tabs"][0]["last"]["rtt"], j["tabs"][1]["last"]["rtt"], j["tabs"][0]["last"]["dps"], j["tabs"][1]["last"]["dps"], j["tabs"][0]["last"]["loss"], j["tabs"][1]["last"]["loss"], sum(sum(c.values()) for c in j["chartInk"]), j.get("browserVersion"))') screenshot=$shot"
}

# client-side cases: the server is a peer; check the client's JSON
check_client_json() {
  local expect_draft="$1"
  [ -n "$CLIENT_JSON" ] || fail "client printed no JSON line"
  local sent received cdraft
  sent="$(jget "$CLIENT_JSON" 'j["sent"]')"; received="$(jget "$CLIENT_JSON" 'j["received"]')"
  cdraft="$(jget "$CLIENT_JSON" 'j.get("draft")')"
  DRAFT="$cdraft"
  [ "$CLIENT_RC" = 0 ] || fail "client exit status $CLIENT_RC (sent=$sent received=$received)"
  [ -n "$sent" ] && [ "$sent" -gt 0 ] && [ "$sent" = "$received" ] || fail "client sent=$sent received=$received"
  [ -z "$expect_draft" ] || [ "$cdraft" = "$expect_draft" ] || fail "client reports draft '$cdraft', expected $expect_draft"
  SUMMARY="$(jget "$CLIENT_JSON" '" ".join("%s=%s" % (k, j[k]) for k in ("sent", "received", "rtt_p50_us", "rtt_p99_us", "max_datagram") if k in j)')"
}

server_close_note() {
  wait_for_log "$SERVER_LOG" 'SESSION_CLOSED' 1 3
  local c; c="$(grep -m1 -oE 'SESSION_CLOSED .*' "$SERVER_LOG")"
  note "server saw: ${c:-<no SESSION_CLOSED line>}"
  SUMMARY="$SUMMARY server:${c:-no-close-seen}"
}

case_wtd_client_to_pywt021_server() {
  start_server pywt021_server 120 "$PY312" "$HERE/pywt021_server.py" --cert "$CERT" --key "$KEY"
  run_sut_client "https://127.0.0.1:$SERVER_PORT/pywt021"
  if [ "$SELF_CHECK" = 1 ]; then check_client_json draft-15; else check_client_json draft-15; fi
  server_close_note
  stop_server
}

case_wtd_client_to_aioquic_server() {
  start_server aioquic_server 120 "$PY311" "$HERE/aioquic_echo_server.py" --cert "$CERT" --key "$KEY"
  run_sut_client "https://127.0.0.1:$SERVER_PORT/aioquic"
  # self-check substitutes the pywt061 client, which labels itself draft-13
  if [ "$SELF_CHECK" = 1 ]; then check_client_json draft-13; else check_client_json draft-02; fi
  server_close_note
  stop_server
}

# ---------------------------------------------------------------- driver
PASSED=0; FAILED=0; FAILED_NAMES=()
SUITE_START=$SECONDS
for name in "${SELECTED[@]}"; do
  if ! declare -F "case_$name" >/dev/null; then
    echo "=== RUN $name"; echo "--- FAIL $name (unknown case)"; FAILED=$((FAILED + 1)); FAILED_NAMES+=("$name"); continue
  fi
  echo "=== RUN $name"
  mkdir -p "$WORK/$name"
  t0=$SECONDS
  (
    CASE_DIR="$WORK/$name"
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    "case_$name"
    echo "${DRAFT:-?}|${SUMMARY}" > "$CASE_DIR/summary"
  )
  rc=$?
  dt=$((SECONDS - t0))
  if [ $rc = 0 ] && [ -f "$WORK/$name/summary" ]; then
    IFS='|' read -r d s < "$WORK/$name/summary"
    echo "--- PASS $name (${d}) ${s} [${dt}s]"
    PASSED=$((PASSED + 1))
  else
    echo "--- FAIL $name: $(cat "$WORK/$name/failure" 2>/dev/null || echo "exit status $rc") [${dt}s] (logs: $WORK/$name)"
    FAILED=$((FAILED + 1)); FAILED_NAMES+=("$name")
  fi
done

echo "suite time $((SECONDS - SUITE_START))s; logs in $WORK"
[ $FAILED = 0 ] || echo "failed cases: ${FAILED_NAMES[*]}"
echo "$PASSED passed, $FAILED failed"
[ $FAILED = 0 ]
