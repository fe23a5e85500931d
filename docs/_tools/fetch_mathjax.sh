#!/usr/bin/env bash
# Usage: fetch_mathjax.sh DEST
# Puts MathJax's single-file SVG build (es5/tex-svg-full.js) into DEST, from the npm registry
# through `npm pack`, unless it is already there. The site then typesets math without any CDN.
set -euo pipefail
version=3.2.2
dest=$1
if [ -f "$dest/tex-svg-full.js" ]; then
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    "$(dirname "$0")/ensure_apt.sh" npm npm
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "mathjax@$version" >/dev/null)
tar -xzf "$work/mathjax-$version.tgz" -C "$work" package/es5/tex-svg-full.js package/LICENSE
mkdir -p "$dest"
cp "$work/package/es5/tex-svg-full.js" "$dest/"
cp "$work/package/LICENSE" "$dest/MATHJAX-LICENSE"
echo "MathJax $version -> $dest/tex-svg-full.js"
