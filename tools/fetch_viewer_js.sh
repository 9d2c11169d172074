#!/usr/bin/env bash
# Fetches the JavaScript of the browser viewer (hsjax/report/viewer.py) with npm, at pinned
# versions, and vendors the files the page loads into hsjax/report/viewer_assets/vendor/
# with their licences. The vendored files are committed; the viewer never loads from a CDN.
#
#   bash tools/fetch_viewer_js.sh        # needs node + npm and the npm registry
#
# Bumping a version: change it below, run this script, run the browser tests
# (python -m pytest tests/test_viewer_browser.py), commit the vendor folder.
set -euo pipefail
cd "$(dirname "$0")/.."

SPARK_VERSION="2.2.0"   # @sparkjsdev/spark, MIT: 3DGS renderer for three.js (SplatSkinning).
THREE_VERSION="0.187.0" # three, MIT (Spark's peer dependency).

dest="hsjax/report/viewer_assets/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm init -y >/dev/null && npm install --no-audit --no-fund --ignore-scripts \
  "@sparkjsdev/spark@${SPARK_VERSION}" "three@${THREE_VERSION}" >/dev/null)
spark="$work/node_modules/@sparkjsdev/spark"
three="$work/node_modules/three"

rm -rf "$dest"
mkdir -p "$dest/spark" "$dest/three/build" "$dest/three/examples/jsm/controls" \
  "$dest/three/examples/jsm/postprocessing"
# Spark: the minified ES module (its workers and WebAssembly are inlined) and its licence.
cp "$spark/dist/spark.module.min.js" "$spark/LICENSE" "$dest/spark/"
# three: the ES module build (three 0.187 ships no minified module), the two addons the page
# and Spark import (`three/addons/...` in the import map), and the licence.
cp "$three/build/three.module.js" "$three/build/three.core.js" "$dest/three/build/"
cp "$three/examples/jsm/controls/OrbitControls.js" "$dest/three/examples/jsm/controls/"
cp "$three/examples/jsm/postprocessing/Pass.js" "$dest/three/examples/jsm/postprocessing/"
cp "$three/LICENSE" "$dest/three/"
cat > "$dest/VERSIONS.json" <<JSON
{
  "@sparkjsdev/spark": "${SPARK_VERSION}",
  "three": "${THREE_VERSION}"
}
JSON
du -sh "$dest"
