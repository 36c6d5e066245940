#!/usr/bin/env bash
# bench/peers/setup.sh: llama.cpp as ternorm's peer, from the npm registry only.
#  1. installs bench/peers/package-lock.json into bench/peers/node_modules: node-llama-cpp
#     3.21.1 and its CPU linux-x64 prebuilt (@node-llama-cpp/linux-x64) only. Its GPU and
#     other-platform packages are optionalDependencies and are omitted; its postinstall (which
#     would fall back to compiling llama.cpp when no prebuilt loads) is not run.
#  2. extracts llama.cpp's public headers from the git bundle node-llama-cpp ships (the
#     sources its prebuilt libraries were built from) into out/peers/include.
#  3. compiles the harnesses against the prebuilt libllama / libggml into out/peers/:
#     llama_peer (tokenize, score, bench-score, decode) and ggml_mul_mat (kernel level),
#     then runs ggml_mul_mat --check (ggml's TQ products against a double reference).
# Each step is skipped when its output is up to date. Linux x64 only. Prints one line:
# "peers: ready ..." (exit 0) or "peers: FAILED: <why>" (exit 1), details in out/peers/setup.log.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="$repo/out/peers"
mkdir -p "$out"
log="$out/setup.log"
: >"$log"
t0=$(date +%s.%N)

fail() {
  echo "peers: FAILED: $1 (log: ${log#"$repo"/})"
  exit 1
}
run() { "$@" >>"$log" 2>&1; }

[ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] || fail "llama.cpp peer needs Linux x86_64, this is $(uname -s)-$(uname -m)"
for tool in npm git g++ sha256sum; do
  command -v "$tool" >/dev/null || fail "$tool not found"
done

# ---- 1. install --------------------------------------------------------------------------
nm="$here/node_modules"
bins="$nm/@node-llama-cpp/linux-x64/bins/linux-x64"
bundle="$nm/node-llama-cpp/llama/gitRelease.bundle"
lock_sum="$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)"
stamp="$nm/.peers-installed"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$lock_sum" ] && [ -d "$bins" ] && [ -f "$bundle" ]; then
  installed="kept"
else
  # --omit=optional: no CUDA/Vulkan/Arm/Windows/macOS packages (the CPU linux-x64 one is a
  # direct dependency, so it stays); --ignore-scripts: no postinstall, nothing compiles.
  # One retry: the registry has answered ETARGET for a published version once (a stale index).
  ci=(npm ci --prefix "$here" --omit=optional --ignore-scripts --no-audit --no-fund)
  run "${ci[@]}" || run "${ci[@]}" || fail "npm ci in bench/peers failed"
  [ -d "$bins" ] || fail "npm ci did not install @node-llama-cpp/linux-x64's binaries ($bins)"
  [ -f "$bundle" ] || fail "node-llama-cpp ships no llama.cpp git bundle at $bundle"
  echo "$lock_sum" >"$stamp"
  installed="installed"
fi
libllama="$(ls "$bins"/libllama.*so 2>/dev/null | grep -v common | head -n1 || true)"
libggml="$(ls "$bins"/libggml.*so 2>/dev/null | head -n1 || true)"
[ -n "$libllama" ] && [ -n "$libggml" ] && [ -f "$bins/libggml-base.so" ] \
  || fail "libllama / libggml / libggml-base not found in $bins"

# ---- 2. headers --------------------------------------------------------------------------
inc="$out/include"
commit="$(git bundle list-heads "$bundle" 2>>"$log" | awk '$2 == "HEAD" {print $1}')"
[ -n "$commit" ] || fail "cannot read the llama.cpp git bundle $bundle"
if [ -f "$inc/.commit" ] && [ "$(cat "$inc/.commit")" = "$commit" ]; then
  headers="kept"
else
  tmp="$out/bundle.git"
  rm -rf "$tmp" "$inc"
  mkdir -p "$inc"
  run git init -q --bare "$tmp" || fail "git init failed"
  run git -C "$tmp" fetch -q "$bundle" "HEAD:refs/heads/release" || fail "cannot fetch from $bundle"
  files="$(git -C "$tmp" ls-tree -r --name-only release include ggml/include | grep '\.h$')"
  # shellcheck disable=SC2086  # one path per word
  git -C "$tmp" archive release $files 2>>"$log" | tar -x -C "$inc" || fail "cannot extract the headers"
  rm -rf "$tmp"
  [ -f "$inc/include/llama.h" ] && [ -f "$inc/ggml/include/ggml.h" ] || fail "the bundle lacks llama.h / ggml.h"
  echo "$commit" >"$inc/.commit"
  headers="extracted"
fi

# ---- 3. build and check --------------------------------------------------------------------
cxx=(g++ -std=c++17 -O2 -Wall -Wextra -I"$inc/include" -I"$inc/ggml/include" -I"$here")
libs=(-L"$bins" -l:"$(basename "$libllama")" -l:"$(basename "$libggml")" -l:libggml-base.so
      -Wl,-rpath,"$bins" -ldl)
built=()
build() {  # build NAME SOURCE
  local exe="$out/$1" src="$here/$2"
  if [ -x "$exe" ] && [ "$exe" -nt "$src" ] && [ "$exe" -nt "$here/peer_util.h" ] \
     && [ "$exe" -nt "$inc/.commit" ] && [ "$exe" -nt "$stamp" ]; then
    return 0
  fi
  run "${cxx[@]}" "$src" -o "$exe.tmp" "${libs[@]}" || fail "compiling $2 failed"
  mv "$exe.tmp" "$exe"
  built+=("$1")
}
build llama_peer llama_peer.cpp
build ggml_mul_mat ggml_mul_mat.cpp
run "$out/ggml_mul_mat" --check --out "$out/check.json" || fail "ggml_mul_mat --check failed"

t1=$(date +%s.%N)
echo "peers: ready in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s (node-llama-cpp 3.21.1 $installed, headers $headers @ ${commit:0:12}, built: ${built[*]:-none}) -> ${out#"$repo"/}/llama_peer, ${out#"$repo"/}/ggml_mul_mat"
