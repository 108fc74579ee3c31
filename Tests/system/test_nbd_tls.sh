#!/usr/bin/env bash
# TLS on the NBD gateway with x509 certificates made here by openssl: a gateway with
# --tls require serves nbdinfo and python-libnbd over TLS and refuses clear-text clients;
# one with --tls on serves both.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/nbd_lib.sh"
start_nbd_cluster 1
"$CAIRN" volume create t1 --size 64MiB --replicas 1 --min-replicas 1 >/dev/null
"$CAIRN" volume create t2 --size 64MiB --replicas 1 --min-replicas 1 >/dev/null

PKI=$T/pki; mkdir -p "$PKI"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=cairn test CA" \
    -keyout "$PKI/ca-key.pem" -out "$PKI/ca-cert.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$PKI/server-key.pem" -out "$PKI/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' > "$PKI/ext.cnf"
openssl x509 -req -in "$PKI/server.csr" -CA "$PKI/ca-cert.pem" -CAkey "$PKI/ca-key.pem" -CAcreateserial \
    -days 2 -extfile "$PKI/ext.cnf" -out "$PKI/server-cert.pem" 2>/dev/null
mkdir -p "$PKI/client" "$PKI/other"; cp "$PKI/ca-cert.pem" "$PKI/client/"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=another CA" \
    -keyout "$PKI/other/ca-key.pem" -out "$PKI/other/ca-cert.pem" 2>/dev/null

TLS_PORT=$(( BASE_PORT + 18 )); ON_PORT=$(( BASE_PORT + 17 ))
gateway() {  # gateway PORT MODE CLIENT-ID VOLUME-LOG
    "$CAIRN" gateway --nbd "127.0.0.1:$1" --tls "$2" --tls-cert "$PKI/server-cert.pem" --tls-key "$PKI/server-key.pem" \
        --client-id "$3" --http none --iscsi none --manager "$(manager_url)" --secret-file "$T/data/secret" > "$T/$3.log" 2>&1 &
    echo $! > "$T/data/run/$3.pid"   # stop_cluster kills it by its pid file
    wait_for "gateway $3 to listen" 10 grep -q "NBD gateway serving" "$T/$3.log"
}
gateway "$TLS_PORT" require gw-require
gateway "$ON_PORT" on gw-on

log "require: nbdinfo over TLS"
info=$(nbdinfo "nbds://127.0.0.1:$TLS_PORT/t1?tls-certificates=$PKI/client")
grep -q "export-size: 67108864" <<< "$info" || fail "TLS export: $info"
log "require: clear-text client refused"
out=$(nbdinfo "nbd://127.0.0.1:$TLS_PORT/t1" 2>&1) && fail "clear-text client served in require mode"
grep -qi "tls" <<< "$out" || fail "refusal does not mention TLS: $out"
nbdinfo --list "nbd://127.0.0.1:$TLS_PORT" >/dev/null 2>&1 && fail "LIST answered in the clear in require mode"
log "require: a client trusting another CA fails"
nbdinfo "nbds://127.0.0.1:$TLS_PORT/t1?tls-certificates=$PKI/other" >/dev/null 2>&1 && fail "untrusted certificate accepted"

log "require: python-libnbd I/O over TLS"
$PY - "$TLS_PORT" "$PKI/client" <<'PY'
import nbd, os, sys
h = nbd.NBD()
h.set_tls(nbd.TLS_REQUIRE)
h.set_tls_certificates(sys.argv[2])
h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
h.connect_uri(f"nbds://127.0.0.1:{sys.argv[1]}/t1")
assert h.get_tls_negotiated(), "TLS not negotiated"
data = os.urandom(4 << 20)
h.pwrite(data, 1 << 20, nbd.CMD_FLAG_FUA)
assert h.pread(4 << 20, 1 << 20) == data
h.trim(1 << 20, 2 << 20)
got = []
h.block_status(1 << 20, 2 << 20, lambda c, o, e, err: got.extend(e))
assert got[:2] == [1 << 20, 3], got
h.flush(); h.shutdown()
print("ok: python TLS I/O, trim and block status")
PY

log "on: both TLS and clear-text clients served"
nbdinfo "nbds://127.0.0.1:$ON_PORT/t2?tls-certificates=$PKI/client" | grep -q "export-size: 67108864" || fail "TLS on: TLS client"
nbdinfo "nbd://127.0.0.1:$ON_PORT/t2" | grep -q "export-size: 67108864" || fail "TLS on: clear-text client"
for g in gw-require gw-on; do kill "$(cat "$T/data/run/$g.pid")"; wait "$(cat "$T/data/run/$g.pid")" 2>/dev/null || true; rm -f "$T/data/run/$g.pid"; done
log "PASS"
