#!/usr/bin/env bash
# Fetch the raw sources that `python -m builders.embedded` turns into data/embedded/:
#   $1/doc/  python3.11-doc unpacked with dpkg-deb -x (reStructuredText under .../html/_sources, PSF licence)
#   $1/cb/   the chatterbot-corpus wheel (English yml dialogues, BSD licence)
# Needs a Debian/Ubuntu apt index that carries python3.11-doc (Debian 12 does) and access to PyPI.
# Nothing is installed: apt-get download + dpkg-deb -x unpack into the folder, pip only downloads.
#
#   bash launch/fetch_raw_sources.sh /tmp/raw
#   python -m builders.embedded --python-doc /tmp/raw/doc --chatterbot /tmp/raw/cb --out data/embedded
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 OUT_DIR" >&2
    exit 2
fi
out="$1"
# The shipped assets were built from these; other versions work but give different files.
DOC_PACKAGE="${DOC_PACKAGE:-python3.11-doc}"          # built from 3.11.2-6+deb12u9
CHATTERBOT_VERSION="${CHATTERBOT_VERSION:-1.3.3}"     # 1.3.3 has ~900 distinct English dialogues, 1.2.0 ~565

mkdir -p "$out/doc" "$out/cb"
out="$(cd "$out" && pwd)"

# apt-get download writes into the current directory and wants a readable apt index.
if ! apt-cache show "$DOC_PACKAGE" >/dev/null 2>&1; then
    echo "apt index has no $DOC_PACKAGE; running apt-get update (needs root)" >&2
    apt-get update -qq
fi
(cd "$out" && apt-get download "$DOC_PACKAGE")
dpkg-deb -x "$out"/"${DOC_PACKAGE}"_*.deb "$out/doc"

python -m pip download --no-deps --only-binary=:all: "chatterbot-corpus==${CHATTERBOT_VERSION}" -d "$out/cb"

echo "docs:       $out/doc/usr/share/doc/python3.11/html/_sources"
echo "chatterbot: $(ls "$out"/cb/chatterbot_corpus-*.whl)"
