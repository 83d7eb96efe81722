#!/usr/bin/python3
"""AMQP 1.0 receiving test peer (Qpid Proton, python3-qpid-proton 0.37; run it with /usr/bin/python3) for
tests of what the gateway puts on a message: it accepts every message and prints it as one JSON line with
its id, body, subject, creation_time and ttl, both in ms (Proton gives seconds).

Usage: proton_capture.py --port N [--host 127.0.0.1] [--credit N] [--hold]
Plain TCP, SASL ANONYMOUS. Each receiving link keeps N credits outstanding (default 100). With --hold a
link gets no credit until a line `grant` arrives on stdin. EOF on stdin (the test process gone) ends it.

Output lines: listening {port}, link {address}, granted {links}, message {address, id, body, subject,
creation_time, ttl}.
"""

import argparse
import json
import os
import sys
import threading

try:
    from proton.handlers import MessagingHandler
    from proton.reactor import ApplicationEvent, Container, EventInjector
except ImportError as exc:  # the TS wrapper turns this exit code into a clear error
    sys.stderr.write('qpid-proton python module missing: %s\n' % exc)
    sys.exit(3)


def emit(record):
    sys.stdout.write(json.dumps(record) + '\n')
    sys.stdout.flush()


def ms(seconds):
    # Proton returns 0 for an absent time; AMQP times are whole ms, so rounding loses nothing.
    return round(seconds * 1000) if seconds else None


class Capture(MessagingHandler):
    def __init__(self, args, injector):
        # prefetch=0: credit is ours to give; auto_accept: every message is accepted.
        super(Capture, self).__init__(prefetch=0, auto_accept=True)
        self.args = args
        self.injector = injector
        self.held = args.hold
        self.links = []

    def on_start(self, event):
        acceptor = event.container.acceptor(self.args.host, self.args.port)
        event.container.selectable(self.injector)
        emit({'event': 'listening', 'port': acceptor._selectable.getsockname()[1]})

    def on_connection_bound(self, event):
        event.transport.sasl().allowed_mechs('ANONYMOUS')
        event.transport.require_auth(False)

    def on_link_opening(self, event):
        link = event.link
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)

    def on_link_opened(self, event):
        link = event.link
        if not link.is_receiver:
            return
        self.links.append(link)
        emit({'event': 'link', 'address': link.remote_target.address})
        if not self.held:
            link.flow(self.args.credit)

    def on_grant(self, event):
        self.held = False
        for link in self.links:
            link.flow(self.args.credit)
        emit({'event': 'granted', 'links': len(self.links)})

    def on_message(self, event):
        message = event.message
        body = message.body
        if isinstance(body, (bytes, bytearray, memoryview)):
            body = bytes(body).decode('utf-8', 'replace')
        emit({'event': 'message', 'address': event.link.remote_target.address, 'id': str(message.id),
              'body': body, 'subject': message.subject, 'creation_time': ms(message.creation_time),
              'ttl': ms(message.ttl)})
        event.link.flow(1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument('--port', type=int, required=True)
    parser.add_argument('--credit', type=int, default=100)
    parser.add_argument('--hold', action='store_true')
    args = parser.parse_args()
    injector = EventInjector()

    def read_stdin():
        for line in sys.stdin:
            if line.strip() == 'grant':
                injector.trigger(ApplicationEvent('grant'))
        os._exit(0)

    threading.Thread(target=read_stdin, daemon=True).start()
    Container(Capture(args, injector)).run()


if __name__ == '__main__':
    main()
