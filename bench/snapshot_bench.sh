#!/bin/bash
# Snapshot figures of BENCHMARKS.md "Snapshots at 64 GiB": a 64 GiB daemon filled to 90%, snapshots
# beside a load and idle, 10 M events of log, kill -9 and a timed restart. Run from the tree's root
# after `make build`; uses ports 50071-50072 and /tmp/snapbench (2 GB).
set -u
B=build/bin
D=/tmp/snapbench
rm -rf $D $D.log; mkdir -p $D
PO="$B/pageowner --server=127.0.0.1:50071"
start() {
  $B/pageownerd --memory=64GiB --data_dir=$D --snapshot_interval=0 --snapshot_log_bytes=0 \
    --listen=127.0.0.1:50071 --metrics_listen=127.0.0.1:50072 "$@" 2>> $D.log &
  PID=$!
  t0=$(date +%s.%N)
  until grep -q "pageownerd: state in\|pageownerd: no --data_dir" <(tail -n 3 $D.log 2>/dev/null); do sleep 0.05; done
  t1=$(date +%s.%N)
  echo "start to serving: $(echo "$t1 - $t0" | bc) s"
}
start
echo "== fill: load --events 30000000 --fill 0.9"
/usr/bin/time -f "%e s" $PO load --events 30000000 --fill 0.9 --seed 1 2>&1 | tail -3
$PO stats | grep -i "allocated\|tracked" | head -3
echo "== snapshot while a load runs"
$PO load --events 6000000 --fill 0.9 --seed 2 > /tmp/snapbench.load2 2>&1 &
L=$!
sleep 2
$PO snapshot
sleep 1
$PO snapshot
wait $L
cat /tmp/snapbench.load2 | tail -2
echo "== snapshot with ingest idle"
$PO snapshot
curl -s 127.0.0.1:50072/metrics | grep "^pageowner_snapshot\|^pageowner_wal_bytes\|^pageowner_wal_segments"
grep VmRSS /proc/$PID/status
ls -la $D | head
echo "== 10M events of log after the snapshot"
$PO load --events 10000000 --fill 0.9 --seed 3 2>&1 | tail -1
curl -s 127.0.0.1:50072/metrics | grep "^pageowner_wal_bytes"
kill -9 $PID; wait $PID 2>/dev/null
echo "== restart (snapshot + 10M events of log)"
: > $D.log
start
grep "state in\|recovery" $D.log
kill $PID; wait $PID 2>/dev/null
du -sh $D
