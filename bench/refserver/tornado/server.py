"""The bench's Tornado reference server: the system the seeds describe, with
the same routes as cmd/tornago (/echo, /clock?Id=, /ws, /receive).

Run: /usr/bin/python3 bench/refserver/tornado/server.py --port 8891
"""
import argparse
import json
import time

import tornado.ioloop
import tornado.web
import tornado.websocket


class Echo(tornado.websocket.WebSocketHandler):
    def check_origin(self, origin):
        return True

    def on_message(self, message):
        self.write_message(message, binary=isinstance(message, bytes))


class Clock(tornado.websocket.WebSocketHandler):
    clients = set()
    by_id = {}
    seq = 0

    def check_origin(self, origin):
        return True

    def open(self):
        self.cid = self.get_argument("Id", None)
        if self.cid is not None:
            old = Clock.by_id.get(self.cid)
            if old is not None:
                old.close(4000, "replaced")
            Clock.by_id[self.cid] = self
        Clock.clients.add(self)

    def on_close(self):
        Clock.clients.discard(self)
        if self.cid is not None and Clock.by_id.get(self.cid) is self:
            del Clock.by_id[self.cid]

    @classmethod
    def tick(cls):
        cls.seq += 1
        now = time.time_ns()
        msg = json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now / 1e9)),
                          "ts": now, "seq": cls.seq})
        for c in list(cls.clients):
            try:
                c.write_message(msg)
            except tornado.websocket.WebSocketClosedError:
                cls.clients.discard(c)


class Chat(tornado.websocket.WebSocketHandler):
    clients = set()

    def check_origin(self, origin):
        return True

    def open(self):
        Chat.clients.add(self)
        self.write_message("Welcome")

    def on_message(self, message):
        self.write_message("new message :" + str(message))

    def on_close(self):
        Chat.clients.discard(self)


class Receive(tornado.web.RequestHandler):
    def get(self):
        msg = self.get_argument("msg", "")
        n = 0
        for c in list(Chat.clients):
            try:
                c.write_message(msg)
                n += 1
            except tornado.websocket.WebSocketClosedError:
                Chat.clients.discard(c)
        self.write({"delivered": n})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8891)
    args = ap.parse_args()
    app = tornado.web.Application([(r"/echo", Echo), (r"/clock", Clock), (r"/ws", Chat), (r"/receive", Receive)])
    app.listen(args.port, backlog=4096)
    tornado.ioloop.PeriodicCallback(Clock.tick, 1000).start()
    tornado.ioloop.IOLoop.current().start()


if __name__ == "__main__":
    main()
