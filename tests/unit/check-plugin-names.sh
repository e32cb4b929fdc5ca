#!/usr/bin/env bash
# CONTRIBUTING "Plugin folders, kinds and files agree": every plugins/<kind>_<name>/
# builds <kind>_<name>.so whose descriptor, read by the real loader
# (ksockd --list-plugins over the build's plugin directory), says kind <kind>
# and name <name>. One TAP line per folder.
set -uo pipefail
ksockd=$1
list=$("$ksockd" --list-plugins 2>&1) || { echo "1..1"; echo "not ok 1 - ksockd --list-plugins failed"; exit 1; }
folders=$(cd "$KSOCK_SOURCE_ROOT/plugins" && for d in */; do [ -f "$d/meson.build" ] && echo "${d%/}"; done)
echo "1..$(echo "$folders" | wc -l)"
n=0 failed=0
for f in $folders; do
  n=$((n + 1))
  kind=${f%%_*} name=${f#*_}
  # KIND NAME VERSION ABI x.y FILE, FILE last; a refused module is logged as "refused ...".
  line=$(echo "$list" | awk -v so="/$f.so" '$NF ~ so"$"')
  if [ -z "$line" ]; then
    echo "not ok $n - plugins/$f/: no $f.so in the plugin path, or the loader refused it"
    echo "$list" | grep -F "$f" | sed 's/^/#   /'
    failed=$((failed + 1))
  elif [ "$(echo "$line" | awk '{print $1, $2}')" != "$kind $name" ]; then
    echo "not ok $n - plugins/$f/ builds $f.so whose descriptor says kind/name: $(echo "$line" | awk '{print $1 "/" $2}')"
    failed=$((failed + 1))
  else
    echo "ok $n - plugins/$f/ -> $f.so, kind $kind, name $name"
  fi
done
[ "$failed" -eq 0 ]
