"""grpc_echo_server.py: a yages.Echo gRPC server (python3-grpcio) for jwtgate's end-to-end tests.

Run standalone:  /usr/bin/python3 grpc_echo_server.py --port P
Or import:       srv = EchoServer(port=0); srv.start(); ... srv.stop()

Debian 12 ships no grpc_tools (protoc) and no grpc_reflection, so the messages are encoded by hand
(yages.Empty is empty, yages.Content is {string text = 1}) and served through grpc's generic
handlers; server reflection (grpc.reflection.v1alpha) is answered by hand from a FileDescriptorProto
built with google.protobuf.descriptor_pb2.

Methods of yages.Echo:
  Ping(Empty) -> Content{"pong"}
  Reverse(Content) -> Content (text reversed)
  ServerStream(Content{"N"} or {"N:payload"}) -> N Contents "payload-i"; N = -1 streams slowly until
      cancelled (the cancellation is recorded)
  ClientStream(stream Content) -> Content (the texts joined with ",")
  BidiStream(stream Content) -> stream Content (each echoed)
  Fail(Content) -> status INVALID_ARGUMENT, details = the text, trailing metadata x-fail: yes
  Slow(Content{"seconds"}) -> Content{"done"} after sleeping (cancellation recorded)
  Peer(Empty) -> Content{the transport peer address: which upstream connection carried the call}
"""
import argparse
import threading
import time
from concurrent import futures

import grpc

SERVICE = "yages.Echo"
REFLECTION = "grpc.reflection.v1alpha.ServerReflection"


# ---- protobuf wire format, just what these messages need ----

def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _read_varint(buf, i):
    shift = n = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(buf):
    """Yields (field number, wire type, value) of a message; value is bytes or int."""
    i = 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _read_varint(buf, i)
        elif wt == 2:
            ln, i = _read_varint(buf, i)
            if i + ln > len(buf):
                raise ValueError("truncated field")
            v = bytes(buf[i:i + ln])
            i += ln
        elif wt == 1:
            v = bytes(buf[i:i + 8])
            i += 8
        elif wt == 5:
            v = bytes(buf[i:i + 4])
            i += 4
        else:
            raise ValueError("wire type %d" % wt)
        yield num, wt, v


def _ld(num, data):
    return _varint(num << 3 | 2) + _varint(len(data)) + data


def encode_content(text):
    data = text.encode()
    return _ld(1, data) if data else b""


def decode_content(buf):
    for num, wt, v in _fields(buf):
        if num == 1 and wt == 2:
            return v.decode()
    return ""


def encode_empty(_=None):
    return b""


class Empty:
    """yages.Empty (grpc treats a deserializer returning None as a failure)."""


def decode_empty(buf):
    return Empty()


def grpc_frame(msg):
    """A gRPC length-prefixed message (uncompressed), for raw HTTP/2 clients."""
    return b"\x00" + len(msg).to_bytes(4, "big") + msg


# ---- reflection ----

def file_descriptor():
    """The serialized FileDescriptorProto of yages/echo.proto."""
    from google.protobuf import descriptor_pb2 as d

    fd = d.FileDescriptorProto(name="yages/echo.proto", package="yages", syntax="proto3")
    fd.message_type.add(name="Empty")
    m = fd.message_type.add(name="Content")
    m.field.add(name="text", number=1, type=d.FieldDescriptorProto.TYPE_STRING,
                label=d.FieldDescriptorProto.LABEL_OPTIONAL, json_name="text")
    svc = fd.service.add(name="Echo")
    for name, inp, out, cs, ss in (("Ping", "Empty", "Content", False, False),
                                   ("Reverse", "Content", "Content", False, False),
                                   ("ServerStream", "Content", "Content", False, True),
                                   ("ClientStream", "Content", "Content", True, False),
                                   ("BidiStream", "Content", "Content", True, True),
                                   ("Fail", "Content", "Content", False, False),
                                   ("Slow", "Content", "Content", False, False),
                                   ("Peer", "Empty", "Content", False, False)):
        svc.method.add(name=name, input_type=".yages." + inp, output_type=".yages." + out,
                       client_streaming=cs, server_streaming=ss)
    return fd.SerializeToString()


def _reflection_answer(req):
    """Answers one ServerReflectionRequest (bytes) with a ServerReflectionResponse (bytes)."""
    host = b""
    body = None
    for num, wt, v in _fields(req):
        if num == 1 and wt == 2:
            host = v
        elif num == 7:  # list_services
            svcs = _ld(1, _ld(1, SERVICE.encode())) + _ld(1, _ld(1, REFLECTION.encode()))
            body = _ld(6, svcs)
        elif num == 3:  # file_by_filename
            body = (_ld(4, _ld(1, file_descriptor())) if v == b"yages/echo.proto"
                    else _ld(7, _varint(8) + _varint(5) + _ld(2, b"file not found")))
        elif num == 4:  # file_containing_symbol
            sym = v.decode()
            if sym == "yages" or sym.startswith("yages."):
                body = _ld(4, _ld(1, file_descriptor()))
            else:
                body = _ld(7, _varint(8) + _varint(5) + _ld(2, b"symbol not found"))
        elif num in (5, 6):
            body = _ld(7, _varint(8) + _varint(12) + _ld(2, b"extensions not supported"))
    if body is None:
        body = _ld(7, _varint(8) + _varint(3) + _ld(2, b"empty request"))
    return _ld(1, host) + _ld(2, req) + body


# ---- the service ----

class EchoServer:
    def __init__(self, port=0, host="127.0.0.1", max_workers=64):
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers),
                                  options=[("grpc.so_reuseport", 0)])
        self.lock = threading.Lock()
        self.cancelled = []  # method names whose call the client (or proxy) cancelled
        self.cancel_event = threading.Event()
        self.peers = []      # transport peers seen by Peer calls
        self.metadata = []   # invocation metadata of each call (list of (key, value))
        handlers = {
            "Ping": grpc.unary_unary_rpc_method_handler(self.ping, decode_empty, encode_content),
            "Reverse": grpc.unary_unary_rpc_method_handler(self.reverse, decode_content, encode_content),
            "ServerStream": grpc.unary_stream_rpc_method_handler(self.server_stream, decode_content,
                                                                 encode_content),
            "ClientStream": grpc.stream_unary_rpc_method_handler(self.client_stream, decode_content,
                                                                 encode_content),
            "BidiStream": grpc.stream_stream_rpc_method_handler(self.bidi_stream, decode_content,
                                                                encode_content),
            "Fail": grpc.unary_unary_rpc_method_handler(self.fail, decode_content, encode_content),
            "Slow": grpc.unary_unary_rpc_method_handler(self.slow, decode_content, encode_content),
            "Peer": grpc.unary_unary_rpc_method_handler(self.peer, decode_empty, encode_content),
        }
        refl = {"ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
            self.reflection, lambda b: b, lambda b: b)}
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),
                                              grpc.method_handlers_generic_handler(REFLECTION, refl)))
        self.port = self.server.add_insecure_port("%s:%d" % (host, port))
        if self.port == 0:
            raise RuntimeError("cannot bind %s:%d" % (host, port))

    def start(self):
        self.server.start()
        return self

    def stop(self):
        self.server.stop(0).wait(5)

    def _note(self, context):
        with self.lock:
            self.metadata.append(tuple(context.invocation_metadata()))

    def _watch_cancel(self, context, name):
        def on_done():
            if context.is_active():
                return
            # Called when the RPC terminates; a cancelled one is no longer active and was not
            # completed by us (completed RPCs set `done` first).
            if not getattr(context, "_jg_done", False):
                with self.lock:
                    self.cancelled.append(name)
                self.cancel_event.set()
        context.add_callback(on_done)

    def ping(self, req, context):
        self._note(context)
        return "pong"

    def reverse(self, text, context):
        self._note(context)
        return text[::-1]

    def server_stream(self, text, context):
        self._note(context)
        count, _, payload = text.partition(":")
        n = int(count or "0")
        payload = payload or "msg"
        if n < 0:
            self._watch_cancel(context, "ServerStream")
            i = 0
            while context.is_active():
                yield "%s-%d" % (payload, i)
                i += 1
                time.sleep(0.02)
            return
        for i in range(n):
            yield "%s-%d" % (payload, i)
        context._jg_done = True

    def client_stream(self, it, context):
        self._note(context)
        return ",".join(it)

    def bidi_stream(self, it, context):
        self._note(context)
        for text in it:
            yield text

    def fail(self, text, context):
        self._note(context)
        context.set_trailing_metadata((("x-fail", "yes"),))
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, text)

    def slow(self, text, context):
        self._note(context)
        self._watch_cancel(context, "Slow")
        end = time.monotonic() + float(text or "1")
        while time.monotonic() < end and context.is_active():
            time.sleep(0.01)
        context._jg_done = True
        return "done"

    def peer(self, req, context):
        self._note(context)
        with self.lock:
            self.peers.append(context.peer())
        return context.peer()

    def reflection(self, it, context):
        for req in it:
            yield _reflection_answer(req)


def main():
    ap = argparse.ArgumentParser(description="yages.Echo gRPC server for jwtgate tests")
    ap.add_argument("--port", type=int, default=9000)
    ap.add_argument("--host", default="127.0.0.1")
    args = ap.parse_args()
    srv = EchoServer(args.port, args.host).start()
    print("listening on %s:%d" % (args.host, srv.port), flush=True)
    try:
        srv.server.wait_for_termination()
    except KeyboardInterrupt:
        srv.stop()


if __name__ == "__main__":
    main()
