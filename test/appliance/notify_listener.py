"""The systemd side of sd_notify for tests: binds a unix datagram socket at argv[1] (as systemd
binds NOTIFY_SOCKET), prints "listening", then every datagram it receives as one JSON string a
line. Exits when stdin closes or on SIGTERM."""
import json
import os
import select
import socket
import sys

path = sys.argv[1]
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(path)
print("listening", flush=True)
while True:
    ready, _, _ = select.select([sock, sys.stdin], [], [])
    if sys.stdin in ready and os.read(sys.stdin.fileno(), 1024) == b"":
        break
    if sock in ready:
        data = sock.recv(4096)
        print(json.dumps(data.decode("utf-8", "replace")), flush=True)
