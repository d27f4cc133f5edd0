#!/bin/sh
# check_layers.sh - the direction of csrc/core's areas: an area includes only itself and the
# areas below it (README "Layout"), no core file includes Lua, and every quoted include names
# its area ("tensor/tensor.h"). Prints each violation as file:line; exits 1 if there is any.
#   base <- tensor <- autograd <- ops <- nn <- module <- models;  io, spect, stats and match sit on tensor.
cd "$(dirname "$0")/../csrc/core" || exit 2

allowed() {
    case $1 in
    base)     echo "base" ;;
    tensor)   echo "base tensor" ;;
    autograd) echo "base tensor autograd" ;;
    ops)      echo "base tensor autograd ops" ;;
    nn)       echo "base tensor autograd ops nn" ;;
    io)       echo "base tensor io" ;;
    spect)    echo "base tensor spect" ;;
    stats)    echo "base tensor stats" ;;
    match)    echo "base tensor match" ;;
    module)   echo "base tensor autograd ops nn io module" ;;
    models)   echo "base tensor autograd ops nn io module models" ;;
    *)        echo "" ;;
    esac
}

bad=0
for f in */*.c */*.h */*.cpp; do
    area=${f%%/*}
    ok=$(allowed "$area")
    if [ -z "$ok" ]; then
        echo "csrc/core/$f: area '$area' is not in the layer table (tools/check_layers.sh)"
        bad=1
        continue
    fi
    # "file:line:text" for each include line
    grep -n '^[[:space:]]*#[[:space:]]*include' "$f" | while IFS= read -r line; do
        n=${line%%:*}
        text=${line#*:}
        case $text in
        *'<lua.h>'* | *'<lauxlib.h>'* | *'<lualib.h>'* | *'"lua.h"'* | *'"lauxlib.h"'*)
            echo "csrc/core/$f:$n: the core includes Lua: $text"
            echo bad ;;
        *'"'*)
            inc=$(printf '%s' "$text" | sed 's/.*"\(.*\)".*/\1/')
            to=${inc%%/*}
            if [ "$to" = "$inc" ]; then
                echo "csrc/core/$f:$n: include without its area: \"$inc\" (write \"AREA/$inc\")"
                echo bad
            elif ! printf ' %s ' "$ok" | grep -q " $to "; then
                echo "csrc/core/$f:$n: $area/ may not include $to/ (\"$inc\"); $area/ may use: $ok"
                echo bad
            fi ;;
        esac
    done
done > /tmp/check_layers.$$
if grep -qx bad /tmp/check_layers.$$; then bad=1; fi
grep -vx bad /tmp/check_layers.$$
rm -f /tmp/check_layers.$$
[ $bad = 0 ] && echo "check-layers: the areas of csrc/core include only downwards"
exit $bad
