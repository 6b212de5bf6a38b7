#!/usr/bin/env bash
# Install what the cluster tests (tests/cluster/) need: Slurm's daemons and client, and munge for its
# authentication. Debian's packages; as root. Idempotent: does nothing when everything is installed.
# The packages' own services are neither configured nor used: the tests start private daemons with a
# throwaway slurm.conf and munge key (see tests/cluster/slurm.py).
set -euo pipefail

PACKAGES=(slurmd slurmctld slurm-client munge)

missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} = 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "install-slurm: missing ${missing[*]}; run as root: apt-get install -y --no-install-recommends ${PACKAGES[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d: the packages' postinst must not start the system's munged/slurmd/slurmctld services.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
fi
trap '[ "$made_policy" = 1 ] && rm -f "$policy"' EXIT
apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
echo "install-slurm: installed ${missing[*]}" >&2
