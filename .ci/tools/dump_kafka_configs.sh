#!/usr/bin/env bash
# Regenerate reconciler/data/kafka-<version>.json from the real Kafka jars (resolved via Maven into
# $KAFKAFORM_CACHE by reconciler.artifacts.resolve_maven). Usage: .ci/tools/dump_kafka_configs.sh 3.9.1 [3.8.1 ...]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
[ $# -gt 0 ] || set -- 3.9.1 3.8.1 4.0.2 4.1.2 4.2.2 4.3.1 4.4.0
for v in "$@"; do
  dir="$(cd "$root" && python3 -c "import sys; from reconciler.artifacts import resolve_maven; print(resolve_maven('kafka', sys.argv[1]))" "$v")"
  out="$root/reconciler/data/kafka-$v.json"
  java -Dlog4j.configuration=file:/dev/null -cp "$dir/libs/*" "$here/DumpKafkaConfigs.java" > "$out.tmp"
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['version']==sys.argv[2], d['version']" "$out.tmp" "$v"
  mv "$out.tmp" "$out"
  echo "wrote $out"
done
