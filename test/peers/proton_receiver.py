#!/usr/bin/python3
"""AMQP 1.0 receiving test peer built on Qpid Proton (python3-qpid-proton 0.37, run it with /usr/bin/python3).

It plays the upstream broker for credit tests: it grants link credit by an explicit policy, settles every
delivery with an outcome chosen by rule, and writes one JSON line to stdout for every event worth checking,
above all every transfer, flagged `over_credit` when the sender had no credit left for it.

Usage:
  proton_receiver.py --port N [--host 127.0.0.1]
      [--cert PEM --key PEM --ca PEM | --no-tls]
      [--credit window N | --credit batch N | --credit drain N] [--drain-interval-ms MS]
      [--total N] [--withhold SECONDS] [--settle-delay-ms MS] [--hold-first N]
      [--outcome RULE]... [--reject-condition NAME] [--on-over-credit record|detach]
      [--exit-on-stdin-eof]

Credit policy (per link, starting when the link is attached, or SECONDS later with --withhold):
  window N   keep N credits outstanding: after every settlement the credit is topped up so that
             credit + deliveries still unsettled here = N (the default, N=10).
  batch N    grant N; grant the next N only when all N of the batch have arrived and been settled.
  drain N    grant N with drain=true (the sender must use it or give it back at once); once the round is
             over (the sender gave the rest back, or used it all), wait --drain-interval-ms (default 200)
             and start the next round. Each round ends with a `drained` line.
  --total N  never let the sender's total on the link pass N (the limit stops growing there), so a sender
             that keeps going is over credit from then on. Handy to make over-credit counts exact.

Outcome policy: accept unless a rule says otherwise. The message's application property `outcome`
('accept'|'reject'|'release'|'modify'|'modify-undeliverable') wins; else the first matching --outcome rule:
  OUTCOME:every=K       the K-th, 2K-th, ... transfer on the link (1-based, counted per link)
  OUTCOME:at=I[,J...]   exactly those transfers on the link
  OUTCOME:all           every transfer
'release' is the `released` outcome, 'modify' is `modified` with delivery-failed=true, undeliverable-here=false.
Rejections carry the error condition --reject-condition (default amqp:precondition-failed) and a description
that names the rule and the transfer.

--hold-first N: the first N transfers this peer receives (counted over all its connections) are never settled:
they stay unsettled, in flight for the sender, until their connection goes. Their transfer lines say held=true.

Output lines (all JSON objects with an "event" key): listening {port}, connection {conn, user, remote},
link {conn, link, address}, flow {link, credit, limit, received, drain}, withholding {link, seconds},
drained {link, returned, received} (with --credit drain: `returned` credits the sender gave back),
transfer {conn, link, address, index, tag, message_id, body_size, size, credit, over_credit, presettled,
outcome, condition}, settled {link, index, outcome} (only with --settle-delay-ms), link_detached {link, condition,
description} (with --on-over-credit detach), link_closed {link, condition},
connection_closed {conn}, transport_error {conn, condition, description} (e.g. a refused client cert),
disconnected {conn} (dropped without close), stopped. SIGTERM (or stdin EOF with
--exit-on-stdin-eof) makes it print `stopped` and exit 0.
"""

import argparse
import collections
import json
import os
import signal
import sys
import threading
import time

try:
    from proton import Condition, Delivery, SSLDomain
    from proton.handlers import MessagingHandler
    from proton.reactor import Container
except ImportError as exc:  # the TS wrapper turns this exit code into a clear error
    sys.stderr.write('qpid-proton python module missing: %s\n' % exc)
    sys.exit(3)

OUTCOMES = ('accept', 'reject', 'release', 'modify', 'modify-undeliverable')


class Stop(Exception):
    pass


def emit(record, flush=False):
    record.setdefault('t', round(time.time(), 6))
    try:
        sys.stdout.write(json.dumps(record, default=str) + '\n')
        if flush:
            sys.stdout.flush()
    except BrokenPipeError:
        # Nobody is reading any more: the test process is gone, so nothing is left to report to.
        os._exit(0)


def text_of(value):
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        try:
            return raw.decode('utf-8')
        except UnicodeDecodeError:
            return 'hex:' + raw.hex()
    if isinstance(value, (int, float, str, bool)):
        return value
    return str(value)


def body_size(body):
    if body is None:
        return 0
    if isinstance(body, (bytes, bytearray, memoryview)):
        return len(bytes(body))
    if isinstance(body, str):
        return len(body.encode('utf-8'))
    return len(json.dumps(body, default=str).encode('utf-8'))


def parse_rule(text):
    outcome, _, selector = text.partition(':')
    if outcome not in OUTCOMES:
        raise argparse.ArgumentTypeError('unknown outcome %r in rule %r (one of %s)' % (outcome, text, ', '.join(OUTCOMES)))
    if selector == 'all':
        return {'text': text, 'outcome': outcome, 'match': lambda n: True}
    key, _, value = selector.partition('=')
    try:
        if key == 'every':
            k = int(value)
            if k < 1:
                raise ValueError
            return {'text': text, 'outcome': outcome, 'match': lambda n: n % k == 0}
        if key == 'at':
            wanted = {int(v) for v in value.split(',') if v}
            return {'text': text, 'outcome': outcome, 'match': lambda n: n in wanted}
    except ValueError:
        pass
    raise argparse.ArgumentTypeError('bad rule %r: use OUTCOME:every=K, OUTCOME:at=I,J or OUTCOME:all' % text)


class LinkState(object):
    """Our own credit book for one receiving link.

    Proton's `receiver.credit` drops only when the application reads a delivery (advance), and transfers the
    transport has already taken in but we have not handled yet sit in `queued`; the credit on the wire is
    `credit - queued`. From our own total of flow() calls we get how many transfers the transport had taken in
    when we granted, which tells which grant a later transfer was sent against.
    """

    def __init__(self, link, conn_id, address):
        self.link = link
        self.conn_id = conn_id
        self.name = link.name
        self.address = address
        self.flowed = 0          # sum of every receiver.flow(n) we made
        self.grants = collections.deque()  # (transfers the transport had taken in at the grant, limit it set)
        self.limit = 0           # limit of the last grant that applies to the transfer being handled
        self.granted = False
        self.index = 0           # transfers handled so far
        self.unsettled = 0       # handled here but not yet settled (only with a settle delay)
        self.batch_settled = 0
        self.draining = False    # a drain round is open (--credit drain)
        self.active = False      # false while credit is withheld
        self.closed = False
        self.close_reported = False


class Receiver(MessagingHandler):
    def __init__(self, args):
        # prefetch=0 and auto_accept=False: Proton must neither grant credit nor settle on its own.
        super(Receiver, self).__init__(prefetch=0, auto_accept=False, auto_settle=True)
        self.args = args
        self.rules = args.outcome or []
        self.acceptor = None
        self.next_conn = 0
        self.held = 0

    # --- connections -------------------------------------------------------------------------------------

    def on_start(self, event):
        container = event.container
        self.container = container
        self.acceptor = container.acceptor(self.args.host, self.args.port)
        if self.args.tls:
            domain = SSLDomain(SSLDomain.MODE_SERVER)
            domain.set_credentials(self.args.cert, self.args.key, None)
            domain.set_trusted_ca_db(self.args.ca)
            domain.set_peer_authentication(SSLDomain.VERIFY_PEER, self.args.ca)
            self.acceptor.set_ssl_domain(domain)
        port = self.args.port
        try:
            # With --port 0 the OS picks the port; the acceptor does not expose its socket otherwise.
            port = self.acceptor._selectable.getsockname()[1]
        except Exception:
            pass
        emit({'event': 'listening', 'host': self.args.host, 'port': port, 'tls': self.args.tls,
              'pid': os.getpid()}, flush=True)

    def on_reactor_quiesced(self, event):
        # Lines are flushed once per reactor pass, just before it waits for I/O: a flush per line was the
        # single largest cost at thousands of transfers a second, and nothing is held back while idle.
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            os._exit(0)

    def on_connection_bound(self, event):
        # 0.37 applies the container's SASL settings only to connections it opens, not to accepted ones.
        transport = event.transport
        sasl = transport.sasl()
        if self.args.tls:
            sasl.allowed_mechs('EXTERNAL')
            transport.require_auth(True)
        else:
            sasl.allowed_mechs('ANONYMOUS')
            transport.require_auth(False)

    def conn_id(self, connection):
        cid = getattr(connection, 'uplink_id', None)
        if cid is None:
            self.next_conn += 1
            cid = self.next_conn
            connection.uplink_id = cid
        return cid

    def on_connection_opened(self, event):
        transport = event.transport or event.connection.transport
        url = getattr(event.connection, 'url', None)
        emit({'event': 'connection', 'conn': self.conn_id(event.connection),
              'user': transport.user if transport else None,
              'container': event.connection.remote_container,
              'remote': str(url) if url else None})

    def on_transport_error(self, event):
        cond = event.transport.condition
        emit({'event': 'transport_error',
              'conn': self.conn_id(event.connection) if event.connection else None,
              'condition': cond.name if cond else None,
              'description': cond.description if cond else None})

    def on_connection_closing(self, event):
        cond = event.connection.remote_condition
        emit({'event': 'connection_closed', 'conn': self.conn_id(event.connection),
              'condition': cond.name if cond else None})

    def on_disconnected(self, event):
        # Only for connections that drop without a close (Proton does not report it after a clean close).
        emit({'event': 'disconnected', 'conn': self.conn_id(event.connection) if event.connection else None})

    # --- links ---------------------------------------------------------------------------------------------

    def state_of(self, link):
        state = getattr(link, 'uplink_state', None)
        if state is None and link.is_receiver:
            address = link.remote_target.address if link.remote_target else None
            state = LinkState(link, self.conn_id(link.connection), address)
            link.uplink_state = state
            emit({'event': 'link', 'conn': state.conn_id, 'link': state.name, 'address': address})
        return state

    def on_link_opening(self, event):
        link = event.link
        # Answer the attach with the sender's own termini, as a broker would.
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        self.state_of(link)

    def on_link_opened(self, event):
        # Transfers that came in the same read as the attach are handled before this event (the local
        # open is queued behind them), which is why on_message also creates the state via state_of().
        state = self.state_of(event.link)
        if state is None:
            return
        if self.args.withhold > 0:
            emit({'event': 'withholding', 'link': state.name, 'seconds': self.args.withhold})
            event.container.schedule(self.args.withhold, Timer(lambda: self.activate(state)))
        else:
            self.activate(state)

    def on_link_closing(self, event):
        self.link_closed(event)

    def on_link_error(self, event):
        self.link_closed(event)

    def on_link_closed(self, event):
        self.link_closed(event)

    def link_closed(self, event):
        state = getattr(event.link, 'uplink_state', None)
        if state is not None and state.close_reported:
            return
        cond = event.link.remote_condition
        emit({'event': 'link_closed', 'link': event.link.name,
              'condition': cond.name if cond else None, 'description': cond.description if cond else None})
        if state is not None:
            state.closed = True
            state.close_reported = True

    # --- credit --------------------------------------------------------------------------------------------

    def activate(self, state):
        if state.closed:
            return
        state.active = True
        self.top_up(state)

    def top_up(self, state):
        if not state.active or state.closed:
            return
        n = self.args.credit_n
        if self.args.credit_mode == 'drain':
            if not state.draining:
                state.draining = True
                state.link.drain_mode = True
                self.set_credit(state, n)
            return
        if self.args.credit_mode == 'window':
            self.set_credit(state, n - state.unsettled)
        elif not state.granted:
            self.set_credit(state, n)
        elif state.batch_settled >= n:
            state.batch_settled -= n
            self.set_credit(state, n)

    def set_credit(self, state, target):
        """Make the credit on the wire `target`, counted from every transfer the transport has taken in."""
        rcv = state.link
        wire = rcv.credit - rcv.queued
        received = state.flowed - wire
        if self.args.total is not None:
            target = min(target, self.args.total - received)
        if target <= max(wire, 0):
            return
        amount = target - wire
        rcv.flow(amount)
        state.flowed += amount
        state.granted = True
        state.grants.append((received, received + target))
        emit({'event': 'flow', 'link': state.name, 'credit': target, 'limit': received + target,
              'received': received, 'drain': state.draining})

    def on_link_flow(self, event):
        # A receiver hears the sender's flow: the answer to a drain, giving back what it did not use.
        state = getattr(event.link, 'uplink_state', None)
        if state is not None and state.draining:
            self.end_drain_round(state, event.link.drained())
        parent = getattr(super(Receiver, self), "on_link_flow", None)
        if parent is not None:
            parent(event)

    def end_drain_round(self, state, returned):
        rcv = state.link
        if rcv.credit - rcv.queued > 0:
            return
        received = state.flowed - returned - (rcv.credit - rcv.queued)
        # Credit given back was never used: from here the sender has none until the next round.
        state.flowed -= returned
        state.grants.append((received, received))
        state.draining = False
        rcv.drain_mode = False
        emit({'event': 'drained', 'link': state.name, 'returned': returned, 'received': received})
        self.container.schedule(self.args.drain_interval_ms / 1000.0, Timer(lambda: self.top_up(state)))

    def credit_at(self, state, i):
        """Credit the sender had left for transfer number i (0-based) when it sent it.

        The applicable grant is the last one made before the transport took transfer i in; one made after
        cannot have been known to the sender, even if we handled transfer i later than that. The judgement
        leans to the sender's side: a grant made just before a transfer was read may still have been in
        flight when the sender sent it, so a violation racing a grant can go unflagged, but a sender that
        kept to its credit is never flagged. With --total the limit stops moving and the count is exact.
        """
        # Transfers are handled in order and grants are recorded in order, so grants that apply are
        # consumed from the front once: linear in the number of transfers, even with one grant each.
        while state.grants and state.grants[0][0] <= i:
            state.limit = state.grants.popleft()[1]
        return state.limit - i

    # --- transfers -----------------------------------------------------------------------------------------

    def choose_outcome(self, message, n):
        props = message.properties or {}
        wanted = props.get('outcome') if isinstance(props, dict) else None
        if wanted in OUTCOMES:
            return wanted, 'application property outcome=%s' % wanted
        for rule in self.rules:
            if rule['match'](n):
                return rule['outcome'], 'rule %s' % rule['text']
        return 'accept', None

    def on_message(self, event):
        dlv = event.delivery
        link = event.link
        state = self.state_of(link)
        if state is None:
            return
        message = event.message
        i = state.index
        state.index += 1
        credit = self.credit_at(state, i)
        over = credit <= 0
        presettled = dlv.settled  # Proton's `settled` is the remote (sender's) settlement
        n = i + 1
        held = not presettled and self.held < self.args.hold_first
        if held:
            self.held += 1
        outcome, why = (None, None) if presettled or held else self.choose_outcome(message, n)
        condition = None
        if outcome == 'reject':
            condition = {'name': self.args.reject_condition,
                         'description': 'rejected by the Proton test peer: %s matched transfer %d on link %s'
                                        % (why, n, state.name)}
        try:
            size = len(message.encode())
        except Exception:
            size = None
        emit({'event': 'transfer', 'conn': state.conn_id, 'link': state.name, 'address': state.address,
              'index': n, 'tag': text_of(dlv.tag), 'message_id': text_of(message.id),
              'body_size': body_size(message.body), 'size': size, 'credit': credit, 'over_credit': over,
              'presettled': bool(presettled), 'outcome': outcome, 'condition': condition, 'held': held})
        if over and self.args.on_over_credit == 'detach' and not state.closed:
            state.closed = True
            description = 'transfer %d on link %s arrived with no link credit left' % (n, state.name)
            link.condition = Condition('amqp:link:transfer-limit-exceeded', description)
            link.close()
            emit({'event': 'link_detached', 'link': state.name, 'condition': 'amqp:link:transfer-limit-exceeded',
                  'description': description})
            return
        if presettled:
            dlv.settle()
            self.after_settle(state)
            return
        if held:
            # Counted as unsettled, so the window policy does not grant its place again.
            state.unsettled += 1
            return
        if self.args.settle_delay_ms > 0:
            state.unsettled += 1
            event.container.schedule(self.args.settle_delay_ms / 1000.0,
                                     Timer(lambda: self.settle_later(state, dlv, outcome, condition, n)))
        else:
            self.settle(dlv, outcome, condition)
            self.after_settle(state)

    def settle_later(self, state, dlv, outcome, condition, n):
        state.unsettled -= 1
        if state.closed:
            return
        try:
            self.settle(dlv, outcome, condition)
        except Exception as exc:  # the link or connection went away meanwhile
            emit({'event': 'settle_failed', 'link': state.name, 'index': n, 'error': str(exc)})
            return
        emit({'event': 'settled', 'link': state.name, 'index': n, 'outcome': outcome})
        self.after_settle(state)

    def settle(self, dlv, outcome, condition):
        # One delivery, one update, one settle: every disposition names exactly its own outcome.
        if outcome == 'reject':
            dlv.local.condition = Condition(condition['name'], condition['description'])
            dlv.update(Delivery.REJECTED)
        elif outcome == 'release':
            dlv.update(Delivery.RELEASED)
        elif outcome in ('modify', 'modify-undeliverable'):
            dlv.local.failed = True
            dlv.local.undeliverable = outcome == 'modify-undeliverable'
            dlv.update(Delivery.MODIFIED)
        else:
            dlv.update(Delivery.ACCEPTED)
        dlv.settle()

    def after_settle(self, state):
        state.batch_settled += 1
        if state.draining:
            self.end_drain_round(state, 0)
            return
        self.top_up(state)

    def on_aborted(self, event):
        state = getattr(event.link, 'uplink_state', None)
        if state is not None:
            # An aborted delivery still used up a credit on the wire.
            state.index += 1
            emit({'event': 'aborted', 'link': state.name, 'index': state.index})


class Timer(object):
    def __init__(self, fn):
        self.fn = fn

    def on_timer_task(self, event):
        self.fn()


def parse_args(argv):
    p = argparse.ArgumentParser(description='Qpid Proton receiving test peer')
    p.add_argument('--host', default='127.0.0.1')
    p.add_argument('--port', type=int, required=True, help='0 lets the OS choose; the ready line tells')
    p.add_argument('--cert')
    p.add_argument('--key')
    p.add_argument('--ca')
    p.add_argument('--no-tls', dest='tls', action='store_false', help='plain TCP, SASL ANONYMOUS or none')
    p.add_argument('--credit', nargs=2, metavar=('MODE', 'N'), default=['window', '10'])
    p.add_argument('--drain-interval-ms', type=float, default=200.0)
    p.add_argument('--total', type=int, default=None)
    p.add_argument('--withhold', type=float, default=0.0, metavar='SECONDS')
    p.add_argument('--settle-delay-ms', type=float, default=0.0)
    p.add_argument('--hold-first', type=int, default=0, metavar='N')
    p.add_argument('--outcome', action='append', type=parse_rule, metavar='RULE')
    p.add_argument('--reject-condition', default='amqp:precondition-failed')
    p.add_argument('--on-over-credit', choices=('record', 'detach'), default='record')
    p.add_argument('--exit-on-stdin-eof', action='store_true')
    args = p.parse_args(argv)
    mode, n = args.credit
    if mode not in ('window', 'batch', 'drain'):
        p.error('--credit MODE must be window, batch or drain')
    try:
        args.credit_n = int(n)
    except ValueError:
        p.error('--credit N must be an integer')
    if args.credit_n < 1:
        p.error('--credit N must be at least 1')
    args.credit_mode = mode
    if args.tls and not (args.cert and args.key and args.ca):
        p.error('TLS needs --cert, --key and --ca (or --no-tls)')
    return args


def main(argv):
    args = parse_args(argv)

    def on_term(signum, frame):
        raise Stop()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    if args.exit_on_stdin_eof:
        def watch_stdin():
            # The test process holds our stdin open; when it dies without stopping us, we stop ourselves.
            # os.read, not sys.stdin: a daemon thread blocked in a buffered read aborts interpreter shutdown.
            try:
                while os.read(0, 4096):
                    pass
            except OSError:
                pass
            os.kill(os.getpid(), signal.SIGTERM)
        threading.Thread(target=watch_stdin, daemon=True).start()

    try:
        Container(Receiver(args)).run()
    except Stop:
        pass
    emit({'event': 'stopped'}, flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
