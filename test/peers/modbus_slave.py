"""A Modbus slave for tests: Debian's pymodbus 3.0 (python3-pymodbus), an implementation independent
of the gateway's. Run with /usr/bin/python3.

    modbus_slave.py --rtu /dev/pts/N --baud 115200 --units 1,2,3
    modbus_slave.py --tcp 0 --units 1          # 0: a free port, printed on the first line

Each unit has 200 coils, discrete inputs, holding and input registers from address 0; a request
beyond them gets exception 2 (illegal data address). The first line on stdout is
{"ready": true, "port": PORT} (PORT for TCP). Then it reads commands from stdin, one JSON object
per line, and answers each with one JSON line carrying the same "id":

    {"id": 1, "op": "set", "unit": 1, "table": "hr", "address": 0, "values": [1, 2]}
    {"id": 2, "op": "get", "unit": 1, "table": "hr", "address": 0, "count": 2}  -> {"values": [...]}
    {"id": 3, "op": "mute", "unit": 1}     the unit stops answering (no response at all)
    {"id": 4, "op": "unmute", "unit": 1}   ...and answers again, with the values it had
    {"id": 5, "op": "requests"}            -> {"requests": N, "byUnit": {"1": N1, ...}}: requests decoded
                                              (answered or ignored), in total and per unit id
    {"id": 6, "op": "exception", "unit": 1, "code": 11, "functions": [6, 16]}
                                           the unit answers requests of those function codes (all
                                           when "functions" is missing) with exception `code`,
                                           changing nothing; "code": 0 ends it

Tables: co (coils), di (discrete inputs), hr (holding registers), ir (input registers).
"""
import argparse
import asyncio
import json
import logging
import sys

from pymodbus.datastore import ModbusSequentialDataBlock, ModbusServerContext, ModbusSlaveContext
from pymodbus.framer.rtu_framer import ModbusRtuFramer
from pymodbus.framer.socket_framer import ModbusSocketFramer
from pymodbus.server.async_io import ModbusSerialServer, ModbusTcpServer

SIZE = 200
TABLES = {"co": "c", "di": "d", "hr": "h", "ir": "i"}


def unit_context():
    # zero_mode: address 0 is the first value, as on the wire.
    return ModbusSlaveContext(
        co=ModbusSequentialDataBlock(0, [0] * SIZE),
        di=ModbusSequentialDataBlock(0, [0] * SIZE),
        hr=ModbusSequentialDataBlock(0, [0] * SIZE),
        ir=ModbusSequentialDataBlock(0, [0] * SIZE),
        zero_mode=True,
    )


class Slave:
    def __init__(self, units):
        self.units = {unit: unit_context() for unit in units}
        self.context = ModbusServerContext(slaves=dict(self.units), single=False)
        self.requests = 0
        self.by_unit = {}
        self.muted = set()
        # unit -> (exception code, function codes or None for all)
        self.exceptions = {}

    def handle(self, command):
        op = command.get("op")
        if op == "set":
            store = self.units[command["unit"]].store[TABLES[command["table"]]]
            store.setValues(command["address"], command["values"])
            return {}
        if op == "get":
            store = self.units[command["unit"]].store[TABLES[command["table"]]]
            values = store.getValues(command["address"], command.get("count", 1))
            return {"values": [int(v) for v in values]}
        if op == "mute":
            self.muted.add(command["unit"])
            return {}
        if op == "unmute":
            self.muted.discard(command["unit"])
            return {}
        if op == "exception":
            if command["code"]:
                self.exceptions[command["unit"]] = (command["code"], command.get("functions"))
            else:
                self.exceptions.pop(command["unit"], None)
            return {}
        if op == "requests":
            return {"requests": self.requests, "byUnit": {str(k): v for k, v in self.by_unit.items()}}
        raise ValueError(f"unknown op {op!r}")


def instrument(slave, server):
    """Counts the requests the server decoded, leaves those to a muted unit unanswered, and answers
    those of a unit told to with an exception."""
    original = server.handler.execute

    def execute(handler, request, *addr):
        slave.requests += 1
        slave.by_unit[request.unit_id] = slave.by_unit.get(request.unit_id, 0) + 1
        if request.unit_id in slave.muted:
            return None
        exception = slave.exceptions.get(request.unit_id)
        if exception is not None and (exception[1] is None or request.function_code in exception[1]):
            response = request.doException(exception[0])
            response.transaction_id = request.transaction_id
            response.unit_id = request.unit_id
            handler.send(response, *addr)
            return None
        return original(handler, request, *addr)

    server.handler = type("InstrumentedHandler", (server.handler,), {"execute": execute})


async def read_commands(slave):
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            return
        command = json.loads(line)
        try:
            answer = slave.handle(command)
        except Exception as exc:  # pylint: disable=broad-except
            answer = {"error": str(exc)}
        answer["id"] = command.get("id")
        print(json.dumps(answer), flush=True)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rtu", help="serial device (a pty) to serve Modbus RTU on")
    parser.add_argument("--baud", type=int, default=115200)
    parser.add_argument("--tcp", type=int, help="TCP port on 127.0.0.1 (0: a free one)")
    parser.add_argument("--units", default="1")
    args = parser.parse_args()
    # pymodbus logs every exception response and ignored request at ERROR: noise in a test's output.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    logging.getLogger().setLevel(logging.CRITICAL)
    slave = Slave([int(u) for u in args.units.split(",")])

    if args.rtu is not None:
        server = ModbusSerialServer(slave.context, ModbusRtuFramer, port=args.rtu, baudrate=args.baud,
                                    ignore_missing_slaves=True)
        instrument(slave, server)
        await server.start()
        port = None
    else:
        server = ModbusTcpServer(slave.context, ModbusSocketFramer, address=("127.0.0.1", args.tcp),
                                 ignore_missing_slaves=True, allow_reuse_address=True)
        instrument(slave, server)
        server.server = await asyncio.get_running_loop().create_server(
            lambda: server.handler(server), "127.0.0.1", args.tcp, reuse_address=True, start_serving=True)
        port = server.server.sockets[0].getsockname()[1]
    print(json.dumps({"ready": True, "port": port}), flush=True)
    await read_commands(slave)


if __name__ == "__main__":
    asyncio.run(main())
