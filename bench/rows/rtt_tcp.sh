# shellcheck shell=bash
# rtt_tcp — the rtt_local pair with both sides forced onto loopback TCP: distc
# with DISTC_TRANSPORT=tcp, Open MPI with --mca btl tcp,self.  Same counts,
# medians of RTT_REPEATS (3), in us.

row_rtt_tcp() {
  rtt_pair rtt_tcp mpi-tcp "DISTC_TRANSPORT=tcp" "--mca btl tcp,self"
}
