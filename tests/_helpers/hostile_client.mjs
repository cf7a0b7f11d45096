// A hostile HTTP/2 client, run with Node (`node hostile_client.mjs ATTACK HOST:PORT [N] [TOKEN]`):
// Node's own node:http2 and raw sockets, so the attacks do not depend on the
// runtime under test. Prints one JSON line with what it saw; every attack is
// bounded in count and time.
import http2 from "node:http2";
import net from "node:net";
import { randomBytes } from "node:crypto";

const [attack, address, countText = "0", token = ""] = process.argv.slice(2);
const [host, portText] = address.split(/:(?=\d+$)/);
const port = Number(portText);
const count = Number(countText);
const PING = "/sloth.v1.AgentService/Ping";
const RUN = "/sloth.v1.AgentService/RunTask";
const EMPTY_MESSAGE = Buffer.from([0, 0, 0, 0, 0]);
const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

const report = (fields) => {
  process.stdout.write(JSON.stringify({ attack, ...fields }) + "\n");
  process.exit(0);
};
setTimeout(() => report({ timedOut: true }), 25_000).unref();

function headers(path, withToken) {
  const h = {
    ":method": "POST",
    ":path": path,
    "content-type": "application/grpc",
    te: "trailers",
  };
  if (withToken) h.authorization = `Bearer ${token}`;
  return h;
}

/** One raw HTTP/2 frame. */
function frame(type, flags, stream, payload = Buffer.alloc(0)) {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream, 5);
  return Buffer.concat([head, payload]);
}

/** HOSTILE_TLS=1: talk TLS (any certificate accepted), for the attacks made of calls. */
const TLS = process.env.HOSTILE_TLS === "1";

function connect() {
  const session = TLS
    ? http2.connect(`https://${address}`, { rejectUnauthorized: false })
    : http2.connect(`http://${address}`);
  session.on("error", () => {});
  return session;
}

/** N calls sent at once on one connection (each a Ping), then a GOAWAY. */
function goawayAfter(withToken) {
  const session = connect();
  let closed = 0;
  const statuses = {};
  session.on("connect", () => {
    for (let i = 0; i < count; i++) {
      let request;
      try {
        request = session.request(headers(PING, withToken));
      } catch {
        closed++;
        continue;
      }
      request.on("error", () => {});
      request.on("response", (h) => {
        const s = h["grpc-status"] ?? "none";
        statuses[s] = (statuses[s] ?? 0) + 1;
      });
      request.on("trailers", (h) => {
        const s = h["grpc-status"] ?? "none";
        statuses[s] = (statuses[s] ?? 0) + 1;
      });
      request.resume();
      request.on("close", () => ++closed === count && finish());
      request.end(EMPTY_MESSAGE);
    }
    try {
      session.goaway(0);
    } catch {
      // Already gone.
    }
  });
  const finish = () => {
    setTimeout(() => {
      session.destroy();
      report({ closed, statuses });
    }, 300);
  };
  session.on("close", () => setTimeout(() => report({ closed, statuses }), 300));
}

/** N calls one after another on one connection (waiting for each), then a GOAWAY. */
async function goawaySequential(withToken) {
  const session = connect();
  let answered = 0;
  for (let i = 0; i < count && !session.destroyed && !session.closed; i++) {
    await new Promise((resolve) => {
      let request;
      try {
        request = session.request(headers(PING, withToken));
      } catch {
        return resolve();
      }
      request.on("error", resolve);
      request.on("close", resolve);
      request.on("response", () => answered++);
      request.resume();
      request.end(EMPTY_MESSAGE);
    });
  }
  try {
    session.goaway(0);
  } catch {
    // Already gone.
  }
  setTimeout(() => report({ answered, cutOff: session.destroyed || session.closed }), 300);
}

/** Streams opened and reset at once ("rapid reset"), N of them, then a GOAWAY. */
function rstFlood(withToken) {
  const session = connect();
  session.on("connect", () => {
    for (let i = 0; i < count; i++) {
      try {
        const request = session.request(headers(PING, withToken));
        request.on("error", () => {});
        request.close(http2.constants.NGHTTP2_CANCEL);
      } catch {
        break;
      }
    }
    try {
      session.goaway(0);
    } catch {
      // Already gone.
    }
    setTimeout(() => report({ sent: count }), 500);
  });
}

/** Raw frames in one write after the preface: N SETTINGS or N PINGs, then a GOAWAY. */
function rawFlood(kind) {
  const socket = net.connect(port, host);
  socket.on("error", () => {});
  let received = 0;
  socket.on("data", (d) => received += d.length);
  socket.on("connect", () => {
    const frames = [PREFACE, frame(4, 0, 0)];
    for (let i = 0; i < count; i++) {
      frames.push(kind === "ping" ? frame(6, 0, 0, randomBytes(8)) : frame(4, 0, 0));
    }
    const goaway = Buffer.alloc(8);
    frames.push(frame(7, 0, 0, goaway));
    socket.write(Buffer.concat(frames));
    setTimeout(() => {
      socket.destroy();
      report({ received });
    }, 1000);
  });
}

/** N TCP connections that send nothing, held for 2 s, then closed. */
function idle() {
  const sockets = [];
  let refused = 0;
  let opened = 0;
  for (let i = 0; i < count; i++) {
    const socket = net.connect(port, host);
    socket.on("error", () => {});
    socket.on("connect", () => opened++);
    socket.on("close", () => refused++);
    sockets.push(socket);
  }
  setTimeout(() => {
    const closedEarly = refused;
    for (const socket of sockets) socket.destroy();
    setTimeout(() => report({ opened, closedEarly }), 200);
  }, 2000);
}

/** N connections that send a call and then never read again, held 2 s. */
function slowReaders(withToken) {
  const sockets = [];
  let cut = 0;
  for (let i = 0; i < count; i++) {
    const socket = net.connect(port, host);
    socket.on("error", () => {});
    socket.on("close", () => cut++);
    sockets.push(socket);
    const session = http2.connect(`http://${address}`, { createConnection: () => socket });
    session.on("error", () => {});
    session.on("connect", () => {
      try {
        const request = session.request(headers(PING, withToken));
        request.on("error", () => {});
        request.end(EMPTY_MESSAGE);
      } catch {
        // Cut off already.
      }
      setTimeout(() => socket.pause(), 10);
    });
  }
  setTimeout(() => {
    const closed = cut;
    for (const socket of sockets) socket.destroy();
    report({ cut: closed });
  }, 2000);
}

/** Wrong tokens, each on a new connection, 4 at a time, for at most N tries or 5 s. */
async function wrongTokens() {
  const started = Date.now();
  let answered = 0;
  let unauthenticated = 0;
  let tries = 0;
  const one = () =>
    new Promise((resolve) => {
      const session = connect();
      const request = session.request({
        ...headers(PING, false),
        authorization: "Bearer wrong-" + tries,
      });
      request.on("error", () => {});
      request.on("response", (h) => {
        answered++;
        if (h["grpc-status"] === "16") unauthenticated++;
      });
      request.resume();
      request.on("close", () => {
        session.destroy();
        resolve();
      });
      request.end(EMPTY_MESSAGE);
    });
  const worker = async () => {
    while (tries < count && Date.now() - started < 5000) {
      tries++;
      await one();
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  report({ tries, answered, unauthenticated, ms: Date.now() - started });
}

/** An authorized call whose first message declares 4 GiB, then up to 64 MiB of body. */
function hugeMessage() {
  const session = connect();
  const request = session.request(headers(RUN, true));
  let sent = 0;
  let reset;
  request.on("error", () => {});
  let status;
  request.on("response", (h) => status = h["grpc-status"]);
  request.on("trailers", (h) => status = h["grpc-status"]);
  request.on("close", () => {
    reset = request.rstCode;
    report({ sent, rstCode: reset, status });
  });
  request.resume();
  const prefix = Buffer.from([0, 0xff, 0xff, 0xff, 0xff]);
  request.write(prefix);
  const chunk = Buffer.alloc(64 * 1024);
  const pump = () => {
    while (reset === undefined && sent < 64 * 1024 * 1024) {
      sent += chunk.length;
      if (!request.write(chunk)) return request.once("drain", pump);
    }
    if (sent >= 64 * 1024 * 1024) report({ sent, rstCode: null });
  };
  pump();
}

/** Random bytes, and a broken preface, N connections each. */
function garbage() {
  let done = 0;
  for (let i = 0; i < count; i++) {
    const socket = net.connect(port, host);
    socket.on("error", () => {});
    socket.on("connect", () => {
      socket.write(
        i % 2 ? randomBytes(64 * 1024) : Buffer.from("PRI * HTTP/1.1\r\n\r\nXX\r\n\r\n"),
      );
      setTimeout(() => socket.destroy(), 200);
    });
    socket.on("close", () => ++done === count && report({ done }));
  }
}

switch (attack) {
  case "goaway-unauthenticated":
    goawayAfter(false);
    break;
  case "goaway-authenticated":
    goawayAfter(true);
    break;
  case "goaway-sequential":
    goawaySequential(token !== "");
    break;
  case "rst-flood":
    rstFlood(token !== "");
    break;
  case "settings-flood":
    rawFlood("settings");
    break;
  case "ping-flood":
    rawFlood("ping");
    break;
  case "idle":
    idle();
    break;
  case "slow-readers":
    slowReaders(token !== "");
    break;
  case "wrong-tokens":
    wrongTokens();
    break;
  case "huge-message":
    hugeMessage();
    break;
  case "garbage":
    garbage();
    break;
  default:
    console.error(`unknown attack ${attack}`);
    process.exit(2);
}
