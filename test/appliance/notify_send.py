"""Sends argv[2] as one datagram to the unix datagram socket at argv[1]."""
import socket
import sys

sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.sendto(sys.argv[2].encode(), sys.argv[1])
