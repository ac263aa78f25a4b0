#!/usr/bin/env bash
# install-deps.sh — every Debian 12 package distc needs to build and test.
# Run as root (or with sudo).  Kept in one place: README and .ci/run use it.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
packages=(
  gcc meson ninja-build pkg-config python3 valgrind  # build and test tools
  libuv1-dev libmsgpack-dev nettle-dev              # libdistc
  libhwloc-dev hwloc                                 # distc-launch -p auto, --bind
  libssh-dev                                         # the ssh manager
  openssh-server openssh-client iproute2 nftables    # its test hosts (tests/ssh)
  libslurm-dev slurm-client                          # the slurm manager
  slurm-wlm slurmctld slurmd munge slurm-wlm-torque  # its test cluster (tests/slurm)
  libopenblas-dev liblapacke-dev                     # contrib/svd, datamove
  clang-14 libclang-rt-14-dev                        # tests/fuzz (libFuzzer)
)
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
