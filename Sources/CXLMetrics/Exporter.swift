import Foundation
import CXL
import NIOCore
import NIOPosix
import NIOHTTP1

/// Bounds of the exporter's HTTP listener: a scraper sends one small GET; anything
/// else is cut short.
public struct ExporterLimits: Sendable {
    /// Bytes a connection may send (request line, headers, any body) before it is
    /// answered 431 and closed.
    public var maxRequestBytes = 8 * 1024
    /// Connections served at once; one more is answered 503 and closed.
    public var maxConnections = 16
    /// How long a connection may live, request and response included.
    public var connectionTimeout: TimeAmount = .seconds(10)
    public init() {}
}

/// What the exporter answers on `GET /metrics`: the exposition in the format the
/// scraper negotiated. Called on a worker thread for every scrape (fresh readings).
public typealias MetricsCollector = @Sendable (MetricsFormat) -> String

/// `cxlkit exporter --listen ADDR:PORT`: an HTTP/1.1 listener (SwiftNIO, NIOHTTP1)
/// serving `/metrics`. One request per connection (`Connection: close`), a bounded
/// number of connections, bounded request size and connection lifetime; target reads
/// run on a thread pool, never on the event loop.
public final class MetricsExporter: Sendable {
    let group: MultiThreadedEventLoopGroup
    let pool: NIOThreadPool
    let channel: any Channel
    let connections: ConnectionBudget
    public let limits: ExporterLimits
    /// The address bound (the real port when 0 was asked for).
    public let host: String
    public let port: Int

    public init(host: String, port: Int, limits: ExporterLimits = ExporterLimits(), collect: @escaping MetricsCollector) throws {
        self.limits = limits
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
        let budget = ConnectionBudget(limit: limits.maxConnections)
        connections = budget
        let pool = self.pool
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let admitted = budget.acquire()
                    channel.closeFuture.whenComplete { _ in if admitted { budget.release() } }
                    let timeout = channel.eventLoop.scheduleTask(in: limits.connectionTimeout) { channel.close(promise: nil) }
                    channel.closeFuture.whenComplete { _ in timeout.cancel() }
                    let sync = channel.pipeline.syncOperations
                    guard admitted else {
                        try sync.addHandler(RawResponder(status: "503 Service Unavailable", body: "too many connections (limit \(limits.maxConnections))\n"))
                        return
                    }
                    try sync.addHandler(RequestSizeLimiter(limit: limits.maxRequestBytes))
                    try sync.configureHTTPServerPipeline(withPipeliningAssistance: false, withErrorHandling: true)
                    try sync.addHandler(MetricsHTTPHandler(pool: pool, collect: collect))
                }
            }
        do {
            channel = try bootstrap.bind(host: host, port: port).wait()
        } catch {
            try? group.syncShutdownGracefully()
            try? pool.syncShutdownGracefully()
            throw error
        }
        self.host = host
        self.port = channel.localAddress?.port ?? port
    }

    /// Blocks until `close()`.
    public func wait() throws { try channel.closeFuture.wait() }

    public func close() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
        try? pool.syncShutdownGracefully()
    }

    /// Connections open now.
    public var openConnections: Int { connections.current }
}

/// Counts connections against the limit.
final class ConnectionBudget: @unchecked Sendable {
    let limit: Int
    private let lock = NSLock()
    private var count = 0
    init(limit: Int) { self.limit = limit }
    func acquire() -> Bool { lock.lock(); defer { lock.unlock() }; guard count < limit else { return false }; count += 1; return true }
    func release() { lock.lock(); count -= 1; lock.unlock() }
    var current: Int { lock.lock(); defer { lock.unlock() }; return count }
}

/// Writes one fixed HTTP response as raw bytes (before any HTTP decoding) and closes.
final class RawResponder: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let status: String
    let body: String
    init(status: String, body: String) {
        self.status = status
        self.body = body
    }
    func channelActive(context: ChannelHandlerContext) {
        let text = "HTTP/1.1 \(status)\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: text))).whenComplete { _ in
            context.close(promise: nil)
        }
    }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}
}

/// Counts what a connection sends; past the limit it answers 431 and closes, before
/// the HTTP decoder buffers any more.
final class RequestSizeLimiter: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let limit: Int
    var seen = 0
    var tripped = false
    init(limit: Int) { self.limit = limit }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !tripped else { return }
        let buffer = unwrapInboundIn(data)
        seen += buffer.readableBytes
        guard seen <= limit else {
            tripped = true
            let body = "request larger than \(limit) bytes\n"
            let text = "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
            context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: text))).whenComplete { _ in
                context.close(promise: nil)
            }
            return
        }
        context.fireChannelRead(data)
    }
}

/// `GET /metrics` (and `HEAD`), `GET /` (a pointer to /metrics); 404 and 405 otherwise.
final class MetricsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let pool: NIOThreadPool
    let collect: MetricsCollector
    var head: HTTPRequestHead?
    var answered = false

    init(pool: NIOThreadPool, collect: @escaping MetricsCollector) {
        self.pool = pool
        self.collect = collect
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h): head = h
        case .body: break
        case .end:
            guard let h = head, !answered else { return }
            answered = true
            handle(context: context, head: h)
        }
    }

    /// A malformed request: NIOHTTP1's protocol error handler has answered 400; close.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func handle(context: ChannelHandlerContext, head: HTTPRequestHead) {
        let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        guard head.method == .GET || head.method == .HEAD else {
            respond(context: context, head: head, status: .methodNotAllowed, contentType: "text/plain; charset=utf-8", body: "only GET and HEAD\n", extra: [("Allow", "GET, HEAD")])
            return
        }
        switch path {
        case "/metrics":
            let format = MetricsFormat.negotiate(accept: head.headers["accept"].first)
            let collect = self.collect
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            pool.runIfActive(eventLoop: context.eventLoop) { collect(format) }.whenComplete { result in
                let (handler, context) = bound.value
                switch result {
                case .success(let text):
                    handler.respond(context: context, head: head, status: .ok, contentType: format.contentType, body: text)
                case .failure(let error):
                    handler.respond(context: context, head: head, status: .internalServerError, contentType: "text/plain; charset=utf-8", body: "\(error)\n")
                }
            }
        case "/":
            respond(context: context, head: head, status: .ok, contentType: "text/html; charset=utf-8",
                    body: "<html><head><title>cxlkit exporter</title></head><body><a href=\"/metrics\">/metrics</a></body></html>\n")
        default:
            respond(context: context, head: head, status: .notFound, contentType: "text/plain; charset=utf-8", body: "not found; try /metrics\n")
        }
    }

    func respond(context: ChannelHandlerContext, head: HTTPRequestHead, status: HTTPResponseStatus, contentType: String, body: String,
                 extra: [(String, String)] = []) {
        var headers = HTTPHeaders([("Content-Type", contentType), ("Content-Length", "\(body.utf8.count)"), ("Connection", "close")])
        for (k, v) in extra { headers.add(name: k, value: v) }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        if head.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        }
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in context.close(promise: nil) }
    }
}

/// `cxlkit exporter --textfile DIR`: the exposition for node_exporter's textfile
/// collector, which reads `DIR/*.prom`. Written through `OutputFile`, as every file cxlkit
/// writes: a regular file is replaced atomically (temporary file, fsync, rename, directory
/// fsync), so a scrape never sees half a file; a symlink is followed; a FIFO or character
/// device is written through; anything else is refused, never replaced.
public enum TextfileWriter {
    public static func write(_ text: String, directory: String, name: String = "cxlkit.prom") throws(TextfileError) {
        guard name.hasSuffix(".prom"), !name.contains("/") else { throw TextfileError("\(name): must be a file name ending in .prom") }
        do { try OutputFile.write(Data(text.utf8), to: directory + "/" + name) } catch {
            throw TextfileError("\(error)")
        }
    }
}

public struct TextfileError: Error, Sendable, CustomStringConvertible {
    public let message: String
    init(_ message: String) { self.message = message }
    public var description: String { message }
}
