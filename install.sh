#!/bin/sh
# Installs sloth-runner and sloth-agent from a GitHub release.
#
#   curl -fsSL https://raw.githubusercontent.com/sloth-runner/sloth-runner/main/install.sh | sh
#   curl -fsSL https://raw.githubusercontent.com/sloth-runner/sloth-runner/main/install.sh | sh -s -- --system
#   sh install.sh [--version vX.Y.Z] [--system | --dir DIR] [--base-url URL] [--target TRIPLE]
#
# Piped, the options go after `sh -s --`. Downloads the executables for this OS and
# CPU, checks them against the release's SHA256SUMS, and installs them to
# ~/.local/bin (or /usr/local/bin with --system). Nothing is installed unless every
# checksum matches.
set -eu

REPO_URL="https://github.com/sloth-runner/sloth-runner/releases"
SCRIPT_URL="https://raw.githubusercontent.com/sloth-runner/sloth-runner/main/install.sh"
# The release targets and asset names of scripts/executables.ts (TARGETS, assetName);
# tests/e2e/install_test.ts holds the two together.
TARGETS="x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu x86_64-apple-darwin aarch64-apple-darwin x86_64-pc-windows-msvc"
version="latest"
dir=""
base_url="${SLOTH_RELEASES_URL:-$REPO_URL}"
target=""

fail() {
  echo "install.sh: $*" >&2
  exit 1
}

usage() {
  cat <<EOF
usage: install.sh [--version vX.Y.Z] [--system | --dir DIR] [--base-url URL] [--target TRIPLE]
   or: curl -fsSL $SCRIPT_URL | sh -s -- [OPTION ...]
       e.g. curl -fsSL $SCRIPT_URL | sh -s -- --system

  --version V   install release V (a tag such as v0.2.0; 0.2.0 means v0.2.0); default: the latest
  --system      install to /usr/local/bin (needs root) instead of ~/.local/bin
  --dir DIR     install to DIR
  --base-url U  where releases are (default $REPO_URL,
                or \$SLOTH_RELEASES_URL): U/latest/download/ASSET, U/download/V/ASSET
  --target T    the build to fetch, instead of this machine's: one of
                $(echo "$TARGETS" | sed 's/ /, /g')
                (Windows builds are installed as NAME.exe)
EOF
}

# An option's value: missing and empty are the same mistake.
need_value() {
  [ -n "$2" ] || fail "$1 needs a value (see install.sh --help)"
}

while [ $# -gt 0 ]; do
  case "$1" in
    --version) need_value "$1" "${2:-}"; version="$2"; shift 2 ;;
    --system) dir="/usr/local/bin"; shift ;;
    --dir) need_value "$1" "${2:-}"; dir="$2"; shift 2 ;;
    --base-url) need_value "$1" "${2:-}"; base_url="$2"; shift 2 ;;
    --target) need_value "$1" "${2:-}"; target="$2"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; fail "unknown option $1" ;;
  esac
done

if [ -z "$dir" ]; then
  # An empty HOME would make this /.local/bin.
  [ -n "${HOME:-}" ] || fail "no install directory: HOME is not set; use --dir DIR or --system"
  dir="$HOME/.local/bin"
fi

# Release tags are vX.Y.Z; "0.2.0" is taken to mean "v0.2.0".
case "$version" in
  [0-9]*) version="v$version" ;;
esac

if [ -n "$target" ]; then
  known=""
  for t in $TARGETS; do
    [ "$t" != "$target" ] || known=1
  done
  [ -n "$known" ] || fail "unknown target $target (targets: $(echo "$TARGETS" | sed 's/ /, /g'))"
else
  case "$(uname -m)" in
    x86_64 | amd64) arch="x86_64" ;;
    aarch64 | arm64) arch="aarch64" ;;
    *) fail "no release build for CPU $(uname -m) (builds exist for x86_64 and aarch64)" ;;
  esac
  case "$(uname -s)" in
    Linux) target="$arch-unknown-linux-gnu" ;;
    Darwin) target="$arch-apple-darwin" ;;
    *) fail "no release build for $(uname -s) (builds exist for Linux and macOS; on Windows, download the .exe files from $REPO_URL)" ;;
  esac
fi
case "$target" in
  *windows*) exe=".exe" ;;
  *) exe="" ;;
esac

if [ "$version" = "latest" ]; then
  from="${base_url%/}/latest/download"
  release="the latest release"
else
  from="${base_url%/}/download/$version"
  release="release $version"
fi

# fetch URL FILE: exit status of the fetcher, its messages in $tmp/fetch.err; curl
# also prints the HTTP status (000: no answer), so a 404 can be told from no connection.
if command -v curl >/dev/null 2>&1; then
  fetcher="curl"
  fetch() { curl -fsSL --retry 2 -w '%{http_code}' -o "$2" "$1" 2>"$tmp/fetch.err"; }
elif command -v wget >/dev/null 2>&1; then
  fetcher="wget"
  # Not -q or -nv: GNU wget would drop its reasons, BusyBox wget has no -nv.
  fetch() { wget -O "$2" "$1" 2>"$tmp/fetch.err"; }
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

# download URL FILE WHAT: fetches URL or fails saying why. WHAT names the file for
# a 404 ("SHA256SUMS" or an asset): a missing release and a missing build read differently.
download() {
  rc=0
  status=$(fetch "$1" "$2") || rc=$?
  [ "$rc" -ne 0 ] || return 0
  host=${1#*://}
  host=${host%%/*}
  # Else from the message: curl "returned error: 404", GNU wget "ERROR 404: Not Found.",
  # BusyBox wget "server returned error: HTTP/1.1 404 Not Found".
  case "$status" in
    [1-9][0-9][0-9]) ;;
    *) status=$(sed -n -e 's/.*returned error: \([1-9][0-9][0-9]\).*/\1/p' \
      -e 's/.*ERROR \([1-9][0-9][0-9]\).*/\1/p' \
      -e 's/.*HTTP\/[0-9.]* \([1-9][0-9][0-9]\).*/\1/p' "$tmp/fetch.err" | head -n 1) ;;
  esac
  # The fetcher's own last line, without its prefixes: curl "Failed to connect to … Couldn't
  # connect to server", GNU wget "Connection refused", BusyBox wget "can't connect to …".
  reason=$(sed -e '/^[[:space:]]*$/d' -e 's/^curl: ([0-9]*) //' -e 's/^wget: //' \
    -e 's/.*\.\.\. failed: //' -e 's/^[0-9-]* [0-9:]* //' -e 's/\.$//' "$tmp/fetch.err" | tail -n 1)
  [ -n "$reason" ] || reason="$fetcher exit $rc"
  if [ "$status" = 404 ]; then
    if [ "$3" != SHA256SUMS ]; then
      fail "cannot download $1: HTTP 404; $release has no build for $target (see $base_url)"
    elif [ "$version" = latest ]; then
      fail "cannot download $1: HTTP 404; $base_url has no latest release (check --base-url)"
    else
      fail "cannot download $1: HTTP 404; is $version a release? (releases: $base_url)"
    fi
  elif [ -n "$status" ]; then
    fail "cannot download $1: HTTP $status from $host; try again later, or check --base-url"
  fi
  # curl: 5 proxy not resolved, 6 host not resolved, 7 no connection, 28 timeout,
  # 35 TLS handshake, 52/56 connection dropped; wget: 4 network failure.
  case "$fetcher:$rc" in
    curl:5 | curl:6 | curl:7 | curl:28 | curl:35 | curl:52 | curl:56 | wget:4)
      fail "cannot download $1: cannot reach $host ($reason); check the network, the proxy settings (HTTPS_PROXY), or --base-url" ;;
    *)
      fail "cannot download $1: $reason ($fetcher exit $rc); check the network, the proxy settings (HTTPS_PROXY), or --base-url" ;;
  esac
}

echo "sloth-runner $version for $target, from $from"
download "$from/SHA256SUMS" "$tmp/SHA256SUMS" SHA256SUMS

for name in sloth-runner sloth-agent; do
  asset="$name-$target$exe"
  download "$from/$asset" "$tmp/$name" "$asset"
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
  mv -f "$tmp/$name" "$dir/$name$exe" || fail "cannot install $dir/$name$exe"
  echo "installed $dir/$name$exe"
done

case ":${PATH:-}:" in
  *":$dir:"*) ;;
  *) echo "note: $dir is not on your PATH; add it, e.g.: export PATH=\"$dir:\$PATH\"" ;;
esac
