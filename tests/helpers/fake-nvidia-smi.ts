import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A stand-in `nvidia-smi` (a shell script) reporting `count` fake GPUs, for testing GPU
 * discovery, pinning and metrics on a machine without NVIDIA hardware. Answers
 * `--query-gpu=<fields> --format=csv,noheader,nounits [-i N]` like the real one.
 * Returns the directory to put first on PATH.
 */
export function fakeNvidiaSmi(count: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'fake-nvidia-smi-'));
  const script = `#!/bin/sh
fields=""; only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --query-gpu=*) fields="\${1#--query-gpu=}" ;;
    -i) shift; only="$1" ;;
  esac
  shift
done
[ -n "$fields" ] || { echo "fake nvidia-smi: only --query-gpu is supported" >&2; exit 6; }
i=0
while [ $i -lt ${count} ]; do
  if [ -z "$only" ] || [ "$only" = "$i" ]; then
    line=""
    for f in $(echo "$fields" | tr ',' ' '); do
      case "$f" in
        index) v=$i ;;
        uuid) v="GPU-fake-$i" ;;
        name) v="NVIDIA Fake H200" ;;
        memory.total) v=143771 ;;
        memory.used) v=$((1000 + i)) ;;
        memory.free) v=$((142771 - i)) ;;
        utilization.gpu) v=$((40 + i)) ;;
        *) v="[N/A]" ;;
      esac
      line="\${line:+$line, }$v"
    done
    echo "$line"
  fi
  i=$((i + 1))
done
`;
  writeFileSync(join(dir, 'nvidia-smi'), script);
  chmodSync(join(dir, 'nvidia-smi'), 0o755);
  return dir;
}
