#!/bin/sh
# Installs sloth-runner and sloth-agent from a GitHub release.
#
#   curl -fsSL https://raw.githubusercontent.com/sloth-runner/sloth-runner/main/install.sh | sh
#   sh install.sh [--version vX.Y.Z] [--system | --dir DIR] [--base-url URL] [--target TRIPLE]
#
# Downloads the executables for this OS and CPU, checks them against the release's
# SHA256SUMS, and installs them to ~/.local/bin (or /usr/local/bin with --system).
# Nothing is installed unless every checksum matches.
set -eu

REPO_URL="https://github.com/sloth-runner/sloth-runner/releases"
version="latest"
dir="${HOME:-}/.local/bin"
base_url="${SLOTH_RELEASES_URL:-$REPO_URL}"
target=""

fail() {
  echo "install.sh: $*" >&2
  exit 1
}

usage() {
  cat <<'EOF'
usage: install.sh [--version vX.Y.Z] [--system | --dir DIR] [--base-url URL] [--target TRIPLE]

  --version V   install release V (a tag such as v0.2.0); default: the latest
  --system      install to /usr/local/bin (needs root) instead of ~/.local/bin
  --dir DIR     install to DIR
  --base-url U  where releases are (default https://github.com/sloth-runner/sloth-runner/releases,
                or $SLOTH_RELEASES_URL): U/latest/download/ASSET, U/download/V/ASSET
  --target T    the build to fetch, instead of this machine's (x86_64-unknown-linux-gnu,
                aarch64-unknown-linux-gnu, x86_64-apple-darwin, aarch64-apple-darwin)
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --version) [ $# -ge 2 ] || fail "--version needs a value"; version="$2"; shift 2 ;;
    --system) dir="/usr/local/bin"; shift ;;
    --dir) [ $# -ge 2 ] || fail "--dir needs a value"; dir="$2"; shift 2 ;;
    --base-url) [ $# -ge 2 ] || fail "--base-url needs a value"; base_url="$2"; shift 2 ;;
    --target) [ $# -ge 2 ] || fail "--target needs a value"; target="$2"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; fail "unknown option $1" ;;
  esac
done
[ -n "$dir" ] || fail "no install directory: HOME is not set; use --dir DIR or --system"

if [ -z "$target" ]; then
  case "$(uname -m)" in
    x86_64 | amd64) arch="x86_64" ;;
    aarch64 | arm64) arch="aarch64" ;;
    *) fail "no release build for CPU $(uname -m) (builds exist for x86_64 and aarch64)" ;;
  esac
  case "$(uname -s)" in
    Linux) target="$arch-unknown-linux-gnu" ;;
    Darwin) target="$arch-apple-darwin" ;;
    *) fail "no release build for $(uname -s): download it from $REPO_URL (Windows: the .exe files)" ;;
  esac
fi

if [ "$version" = "latest" ]; then
  from="${base_url%/}/latest/download"
else
  from="${base_url%/}/download/$version"
fi

if command -v curl >/dev/null 2>&1; then
  fetch() { curl -fsSL --retry 2 -o "$2" "$1"; }
elif command -v wget >/dev/null 2>&1; then
  fetch() { wget -q -O "$2" "$1"; }
else
  fail "needs curl or wget to download"
fi

if command -v sha256sum >/dev/null 2>&1; then
  digest() { sha256sum "$1" | cut -d' ' -f1; }
elif command -v shasum >/dev/null 2>&1; then
  digest() { shasum -a 256 "$1" | cut -d' ' -f1; }
else
  fail "needs sha256sum or shasum to check the download"
fi

tmp=$(mktemp -d 2>/dev/null || mktemp -d -t sloth-install)
trap 'rm -rf "$tmp"' EXIT INT TERM

echo "sloth-runner $version for $target, from $from"
fetch "$from/SHA256SUMS" "$tmp/SHA256SUMS" ||
  fail "cannot download $from/SHA256SUMS (is $version a release?)"

for name in sloth-runner sloth-agent; do
  asset="$name-$target"
  fetch "$from/$asset" "$tmp/$name" || fail "cannot download $from/$asset"
  want=$(awk -v a="$asset" '$2 == a || $2 == "*" a { print $1; exit }' "$tmp/SHA256SUMS")
  [ -n "$want" ] || fail "SHA256SUMS has no line for $asset; nothing installed"
  got=$(digest "$tmp/$name")
  [ "$got" = "$want" ] ||
    fail "checksum mismatch for $asset (expected $want, got $got); nothing installed"
done

mkdir -p "$dir" || fail "cannot create $dir"
[ -w "$dir" ] || fail "cannot write to $dir (run as root for --system, or use --dir DIR)"
for name in sloth-runner sloth-agent; do
  chmod 0755 "$tmp/$name"
  mv -f "$tmp/$name" "$dir/$name" || fail "cannot install $dir/$name"
  echo "installed $dir/$name"
done

case ":${PATH:-}:" in
  *":$dir:"*) ;;
  *) echo "note: $dir is not on your PATH; add it, e.g.: export PATH=\"$dir:\$PATH\"" ;;
esac
