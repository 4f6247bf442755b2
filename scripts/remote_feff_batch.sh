#!/usr/bin/env bash
# Run a FEFF batch on a many-core node that has python3 but not xanesdb's dependencies.
#
# Here:  xanesdb feff export-inputs BATCH --preset fast
#        python scripts/pack_batch.py BATCH BATCH.tgz        (only the folders not finished yet)
# There: scripts/remote_feff_batch.sh BATCH.tgz OUT DEADLINE_S [SOLO_N]
# Here:  xanesdb feff import-batch OUT/results.tgz
#
# The node needs this repository (for xanesdb/jobs/feff/{batch,run}.py, standard library only) and
# the feff10-rs wheel in .whl/ (or feff10 installed). SOLO_N > 0 first runs the first SOLO_N sites
# one at a time, alone, so that their times under full load give the scaling of N workers against 1.
set -euo pipefail
tgz=$1; out=$2; deadline=$3; solo=${4:-0}
mkdir -p "$out"
if ! python3 -c "import feff10" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/feff10-site .whl/feff10_rs-*.whl
  export PYTHONPATH=/tmp/feff10-site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
batch=/tmp/feff-batch
rm -rf "$batch" /tmp/feff-solo && mkdir -p "$batch" /tmp/feff-solo
tar xzf "$tgz" -C "$batch"
echo "node: $(nproc) CPUs; $(lscpu | grep 'Model name' | sed 's/  */ /g')"
t0=$(date +%s)
if [ "$solo" -gt 0 ]; then
  python3 - "$batch" "$solo" <<'EOF'
import json, shutil, sys
from pathlib import Path
b, n = Path(sys.argv[1]), int(sys.argv[2])
for name in json.loads((b / "manifest.json").read_text())["folders"][:n]:
    shutil.copytree(b / name, Path("/tmp/feff-solo") / name)
EOF
  python3 -m xanesdb.jobs.feff.batch /tmp/feff-solo --workers 1 --pack "$out/solo.tgz"
fi
left=$(( deadline - ($(date +%s) - t0) ))
python3 -m xanesdb.jobs.feff.batch "$batch" --workers "${WORKERS:-$(nproc)}" --deadline "$left" --pack "$out/results.tgz"
