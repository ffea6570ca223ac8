/**
 * A misbehaving HTTP/1.1 server on 127.0.0.1 for testing download robustness: it can stall before
 * the headers or in the middle of the body, cut a body short and close the connection, close a
 * connection without answering, or answer normally (any status, headers and body, e.g. an HTML
 * page with status 200).
 *
 * It speaks raw HTTP over TCP (`Deno.listen`) so that it can misbehave in ways `Deno.serve` will
 * not, and answers every request with `connection: close`. Stalled connections are released when
 * the client gives up or when the server closes, so tests leak no resources.
 *
 * @module
 */

/** What the server does with one request. */
export type HostileStep =
  /**
   * Answers normally. `content-length` is set from the body unless `headers` sets it or
   * `contentLength` is `false` (the body then ends when the connection closes).
   */
  | {
    readonly kind: "respond";
    readonly status?: number;
    readonly headers?: Readonly<Record<string, string>>;
    readonly body?: string | Uint8Array;
    readonly contentLength?: boolean;
  }
  /** Reads the request and never answers. */
  | { readonly kind: "stallHeaders" }
  /** Sends the headers (`content-length` of the whole body) and `sent` bytes, then stalls. */
  | {
    readonly kind: "stallBody";
    readonly headers?: Readonly<Record<string, string>>;
    readonly body: Uint8Array;
    readonly sent: number;
  }
  /** Sends the headers (`content-length` of the whole body) and `sent` bytes, then closes. */
  | {
    readonly kind: "truncate";
    readonly headers?: Readonly<Record<string, string>>;
    readonly body: Uint8Array;
    readonly sent: number;
  }
  /** Closes the connection without answering. */
  | { readonly kind: "reset" };

/** A running hostile server. */
export interface HostileServer extends AsyncDisposable {
  /** Base URL, e.g. `http://127.0.0.1:41234`, to use as `HF_ENDPOINT`. */
  readonly endpoint: string;
  /** Path of every request received, in order. */
  readonly requests: string[];
  /** How many requests `path` received. */
  count(path: string): number;
  /** Closes the listener and every connection, and waits for all handlers to finish. */
  close(): Promise<void>;
}

const REASONS: Record<number, string> = {
  200: "OK",
  302: "Found",
  404: "Not Found",
  429: "Too Many Requests",
  500: "Internal Server Error",
  503: "Service Unavailable",
};

/**
 * Starts a hostile server. `routes` maps a request path (e.g. `/o/r/resolve/main/config.json`) to
 * the steps for its successive requests; the last step repeats. Other paths get a 404.
 *
 * @param routes Steps by request path.
 * @returns The running server; close it (or `await using` it) when done.
 */
export function startHostileServer(
  routes: Readonly<Record<string, HostileStep | readonly HostileStep[]>>,
): HostileServer {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const requests: string[] = [];
  const open = new Set<Deno.Conn>();
  const handlers = new Set<Promise<void>>();
  const seen = new Map<string, number>();
  let closed = false;

  const stepFor = (path: string): HostileStep => {
    const route = routes[path];
    if (route === undefined) return { kind: "respond", status: 404, body: "not found\n" };
    const steps: readonly HostileStep[] = Array.isArray(route) ? route : [route as HostileStep];
    const n = seen.get(path) ?? 0;
    seen.set(path, n + 1);
    return steps[Math.min(n, steps.length - 1)]!;
  };

  const handle = async (conn: Deno.Conn) => {
    const buf = new Uint8Array(16384);
    try {
      let head = "";
      while (!head.includes("\r\n\r\n")) {
        const n = await conn.read(buf);
        if (n === null) return;
        head += new TextDecoder().decode(buf.subarray(0, n));
      }
      const path = head.split(" ")[1] ?? "/";
      requests.push(path);
      const step = stepFor(path);
      if (step.kind === "reset") return;
      if (step.kind === "stallHeaders") return await drain(conn, buf);
      const body = step.kind === "respond"
        ? (typeof step.body === "string" ? new TextEncoder().encode(step.body) : step.body)
        : step.body;
      const status = step.kind === "respond" ? step.status ?? 200 : 200;
      const headers: Record<string, string> = {
        ...(body !== undefined && !(step.kind === "respond" && step.contentLength === false)
          ? { "content-length": String(body.length) }
          : {}),
        ...step.headers,
        connection: "close",
      };
      const lines = [`HTTP/1.1 ${status} ${REASONS[status] ?? "Status"}`];
      for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
      await writeAll(conn, new TextEncoder().encode(lines.join("\r\n") + "\r\n\r\n"));
      if (step.kind === "respond") {
        if (body !== undefined) await writeAll(conn, body);
        return;
      }
      await writeAll(conn, step.body.subarray(0, step.sent));
      if (step.kind === "stallBody") await drain(conn, buf);
    } catch {
      // The client went away or the server is closing.
    } finally {
      if (open.delete(conn)) conn.close();
    }
  };

  const accepting = (async () => {
    while (true) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch {
        return; // listener closed
      }
      if (closed) {
        conn.close();
        continue;
      }
      open.add(conn);
      const h = handle(conn);
      handlers.add(h);
      void h.finally(() => handlers.delete(h));
    }
  })();

  const close = async () => {
    if (closed) return;
    closed = true;
    listener.close();
    await accepting;
    for (const conn of open) conn.close();
    open.clear();
    await Promise.allSettled([...handlers]);
  };
  return {
    endpoint: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    requests,
    count: (path) => requests.filter((p) => p === path).length,
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** Reads until the client closes the connection (or it is closed under us). */
async function drain(conn: Deno.Conn, buf: Uint8Array): Promise<void> {
  while ((await conn.read(buf)) !== null) { /* discard */ }
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  for (let off = 0; off < data.length;) off += await conn.write(data.subarray(off));
}
