#!/usr/bin/env bash
# Runs a command under another Node.js major line (22, 24, …) than the machine's, so that the suite
# is checked on the LTS lines Blastgate promises to run on without a system install:
#   scripts/with-node.sh 24 npx vitest run test/http
# The binary is the npm registry's node-linux-<arch> package of that line, kept in .cache/.
set -euo pipefail
major=${1:?usage: scripts/with-node.sh <major> <command…>}
shift
case "$(uname -m)" in
  x86_64) arch=x64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) echo "with-node: no node-linux package for $(uname -m)" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."
dir=".cache/node-$major-$arch"
if [ ! -x "$dir/package/bin/node" ]; then
  rm -rf "$dir" && mkdir -p "$dir"
  tgz=$(cd "$dir" && npm pack --silent "node-linux-$arch@$major")
  tar xzf "$dir/$tgz" -C "$dir" && rm "$dir/$tgz"
fi
export PATH="$PWD/$dir/package/bin:$PATH"
echo "with-node: $(node --version) ($dir)" >&2
exec "$@"
