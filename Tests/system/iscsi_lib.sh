# iSCSI helpers of the system tests; source after lib.sh. The gateway that `cairn local up`
# starts serves iSCSI on ISCSI_PORT without authentication (loopback test cluster).
ISCSI_PORT=${ISCSI_PORT:-$(( BASE_PORT + 18 ))}
IQN_PREFIX="iqn.2026-11.io.cairn:"

iscsi_listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_iscsi_cluster() {  # start_iscsi_cluster NODES [extra local-up flags...]
    local nodes=$1; shift
    start_cluster "$nodes" --iscsi-port "$ISCSI_PORT" "$@"
    wait_for "the iSCSI target on port $ISCSI_PORT" 30 iscsi_listening "$ISCSI_PORT"
}

iscsi_url() {  # iscsi_url VOLUME [PORT] [USER%PASSWORD@]
    echo "iscsi://${3:-}127.0.0.1:${2:-$ISCSI_PORT}/${IQN_PREFIX}$1/0"
}
