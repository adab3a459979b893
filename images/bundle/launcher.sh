#!/bin/sh
# The app bundle's commands: bin/registerd, bin/registerctl, … are links to this file, which runs the
# entry point of the name it was called by with the bundle's own Node. It finds its release directory
# through every link (/opt/register/bin/X -> ../current/bin/X -> launcher), so a release runs only
# its own code and runtime. docs/decisions/0010-bundle.md.
set -eu

self=$(readlink -f "$0")
release=${self%/bin/*}

case ${0##*/} in
registerd) entry=dist/appliance/registerd.js ;;
registerctl) entry=dist/appliance/control/registerctl.js ;;
register-ui) entry=dist/appliance/ui/main.js ;;
register-provision) entry=dist/appliance/provision/main.js ;;
ledger) entry=dist/ledger/main.js ;;
*)
  echo "register bundle: no command named ${0##*/}" >&2
  exit 64
  ;;
esac

exec "$release/node/bin/node" "$release/$entry" "$@"
