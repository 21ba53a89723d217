#!/usr/bin/env bash
# Sets up and runs the platform with a demo fleet of simulated enterprises:
# InfluxDB (Debian's package, data under var/influxdb, port 8186), the HJ 212
# server on port 9212, the rule engine, and the simulated data loggers of
# registry/demo.
# Prints a line of figures every few seconds; Ctrl-C stops everything cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p var/log
GKJK=.venv/bin/gkjk
CONFIG=config/demo.toml

pids=()
stop_all() {
    trap "" INT TERM  # a second Ctrl-C must not cut the clean stop short
    trap - EXIT
    echo "demo: stopping" >&2
    for (( i=${#pids[@]}-1; i>=0; i-- )); do
        kill -TERM "${pids[i]}" 2>/dev/null || true
        wait "${pids[i]}" 2>/dev/null || true
    done
    echo "demo: stopped; logs in var/log/, data in var/influxdb/" >&2
}
trap stop_all INT TERM EXIT

# Its own session: the terminal's Ctrl-C must not stop InfluxDB before the server has drained into it.
setsid $GKJK influxd --dir var/influxdb --port 8186 >>var/log/influxd.log 2>&1 &
pids+=($!)
.venv/bin/python - <<'PY'
import time, urllib.request
for _ in range(300):
    try:
        urllib.request.urlopen("http://127.0.0.1:8186/ping", timeout=1); break
    except Exception:
        time.sleep(0.1)
else:
    raise SystemExit("demo: InfluxDB did not start; see var/log/influxd.log")
PY
echo "demo: InfluxDB on http://127.0.0.1:8186 (database gkjk)" >&2

$GKJK serve --config $CONFIG --status 2>>var/log/serve.log &
pids+=($!)
sleep 1
echo "demo: HJ 212 server on port 9212; log in var/log/serve.log" >&2

# Today's heavy-pollution alert (应急管控) for the demo: orange for 如皋市 from 08:00 to 20:00 local time
# (the format is config/emergency/example-rugao-orange.toml, documented in docs/plugins.md).
mkdir -p var/emergency
today=$(TZ=Asia/Shanghai date +%F)
cat >var/emergency/demo.toml <<TOML
[[periods]]
id = "$today-rugao-orange"
name = "如皋市$(TZ=Asia/Shanghai date +%Y年%-m月%-d日)重污染天气预警"
level = "橙色"
start = ${today}T08:00:00
end = ${today}T20:00:00
counties = ["如皋市"]

[levels."橙色"]
load_cap = 0.6
TOML

$GKJK rules --config $CONFIG >>var/log/rules.log 2>&1 &
pids+=($!)
echo "demo: rule engine evaluating every minute; alarms in InfluxDB (measurement alarm); log in var/log/rules.log" >&2

# Alarm notifications from Grafana, in dry run: nothing is sent to DingTalk or by SMS. Grafana's token is generated once.
mkdir -p var/relay
[ -s var/relay/token ] || (umask 077; .venv/bin/python -c "import secrets; print(secrets.token_hex(16))" >var/relay/token)
GKJK_RELAY_TOKEN=$(cat var/relay/token) $GKJK relay --config $CONFIG --dry-run >>var/log/relay.log 2>&1 &
pids+=($!)
echo "demo: notification relay (dry run) on http://127.0.0.1:9300, Grafana's token in var/relay/token;" \
    "messages it would send in var/relay/dry-run.jsonl; log in var/log/relay.log" >&2

# One enterprise runs the whole field chain: Modbus instruments -> data loggers -> HJ 212.
EMULATED=91320682122757095P
$GKJK modbus-sim --config $CONFIG --enterprise $EMULATED --port-base 15020 >>var/log/modbus-sim.log 2>&1 &
pids+=($!)
port=15020
for mn in $(.venv/bin/python -c "
from pathlib import Path
from gkjk.registry import load_registry
print(' '.join(d.mn for d in load_registry(Path('registry/demo')).enterprises['$EMULATED'].devices))"); do
    $GKJK logger --config $CONFIG --mn "$mn" --modbus 127.0.0.1:$port --platform 127.0.0.1:9212 \
        --store "var/logger/$mn" >>var/log/logger.log 2>&1 &
    pids+=($!)
    port=$((port + 1))
done
echo "demo: enterprise $EMULATED emulated end to end (Modbus simulator + data loggers); logs in var/log/" >&2

$GKJK simulate --config $CONFIG --status-every 0 --bad-frame-rate 0.002 \
    --outage-rate 0.0005 --outage-minutes 15 --fault-share 0.25 --skip-enterprise $EMULATED \
    >>var/log/simulate.log 2>&1 &
pids+=($!)
echo "demo: simulated enterprises of registry/demo connecting; log in var/log/simulate.log" >&2
echo "demo: figures every 5 s below; Ctrl-C stops" >&2
wait -n "${pids[@]}" || true
