#!/bin/sh
# Starts one demo host: its own host key (from the shared volume) and the collector's key authorized.
set -eu
NAME=${HOST_NAME:?set HOST_NAME to demo1, demo2, ...}
install -m 0600 "/keys/$NAME.host_key" /etc/ssh/fleetrun_host_key
install -d -m 0700 -o fleetrun -g fleetrun /home/fleetrun/.ssh
install -m 0600 -o fleetrun -g fleetrun /keys/id_ed25519.pub /home/fleetrun/.ssh/authorized_keys
sed -e "s|{name}|$NAME|; s|{address}|0.0.0.0|; s|{port}|22|" \
    -e "s|{host_key}|/etc/ssh/fleetrun_host_key|; s|{pid_file}|/run/sshd.pid|" \
    -e "s|{authorized_keys}|.ssh/authorized_keys|; s|{user}|fleetrun|" \
    /etc/fleetrun/sshd_config.template > /etc/ssh/sshd_config
exec /usr/sbin/sshd -D -e -f /etc/ssh/sshd_config
