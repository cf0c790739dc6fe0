#!/bin/sh
# Run a command on a network-namespace "host", the way `ssh HOST COMMAND...` runs it on a real one.
#
#   nsexec.sh [-x ...] HOST COMMAND...       (mpiexec's launcher-exec / Open MPI's plm_ssh_agent)
#
# HOST runs in the network namespace "$DT_NETNS_PREFIX$HOST", in its own UTS namespace whose
# hostname is HOST (Open MPI tells nodes apart by hostname). Like ssh, the words of COMMAND are
# joined and run by a shell. Hosts named in $DT_NETNS_NOSHARE (space-separated) see an empty
# private tmpfs over the directory $DT_NETNS_NOSHARE_DIR: no shared filesystem there.
# Set up and torn down by tests/netns.py.
while [ $# -gt 0 ]; do
    case "$1" in
        -*) shift ;;          # ssh options (hydra passes -x)
        *) break ;;
    esac
done
host=$1
shift
: "${DT_NETNS_PREFIX:?nsexec.sh: DT_NETNS_PREFIX is not set (tests/netns.py sets it)}"
private=
case " ${DT_NETNS_NOSHARE:-} " in
    *" $host "*) private=${DT_NETNS_NOSHARE_DIR:?} ;;
esac
# `ip netns exec` gives the command its own mount namespace, so the tmpfs stays private to it.
exec ip netns exec "$DT_NETNS_PREFIX$host" unshare --uts sh -c '
    hostname "$1" || exit 1
    if [ -n "$2" ]; then mount -t tmpfs -o size=64m dtns-private "$2" || exit 1; fi
    shift 2
    exec sh -c "$*"' nsexec "$host" "$private" "$@"
