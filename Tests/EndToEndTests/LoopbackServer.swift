// A tiny HTTP/1.1 server on 127.0.0.1 serving fixture files, for the zoo fetch tests.
//   /range/NAME    honours Range requests (206)
//   /norange/NAME  ignores Range (always 200, whole body)
//   /corrupt/NAME  serves the file with one byte flipped
//   /cut/NAME      declares the full length but closes after half the body (unless a Range is asked)
import Foundation
#if canImport(Glibc)
import Glibc
#endif

final class LoopbackServer: @unchecked Sendable {
    let port: UInt16
    private let fd: Int32
    private let files: [String: String]
    private var running = true
    private(set) var requests: [String] = []
    private let lock = NSLock()

    /// Serves `files` (URL name -> path on disk).
    init(files: [String: String]) throws {
        self.files = files
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0, listen(fd, 16) == 0 else { throw POSIXError(.EADDRINUSE) }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &addr) { _ = $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        port = UInt16(bigEndian: addr.sin_port)
        self.fd = fd
        let thread = Thread { [self] in self.serve() }
        thread.start()
    }

    func url(_ mode: String, _ name: String) -> String { "http://127.0.0.1:\(port)/\(mode)/\(name)" }

    func stop() {
        running = false
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
    }

    var log: [String] { lock.lock(); defer { lock.unlock() }; return requests }

    private func serve() {
        while running {
            let c = accept(fd, nil, nil)
            if c < 0 { if running { continue } else { return } }
            handle(c)
            close(c)
        }
    }

    private func send(_ c: Int32, _ data: Data) {
        data.withUnsafeBytes { raw in
            var off = 0
            while off < raw.count {
                let n = Glibc.send(c, raw.baseAddress! + off, raw.count - off, Int32(MSG_NOSIGNAL))
                if n <= 0 { return }
                off += n
            }
        }
    }

    private func handle(_ c: Int32) {
        var buffer = [UInt8](repeating: 0, count: 8192)
        var request = Data()
        while !request.contains(Data("\r\n\r\n".utf8)) {
            let n = recv(c, &buffer, buffer.count, 0)
            if n <= 0 { return }
            request.append(contentsOf: buffer[0..<n])
        }
        let text = String(decoding: request, as: UTF8.self)
        let lines = text.components(separatedBy: "\r\n")
        let parts = lines[0].split(separator: " ")
        guard parts.count >= 2 else { return }
        let path = parts[1].split(separator: "/").map(String.init)
        var range: Int?
        for l in lines where l.lowercased().hasPrefix("range: bytes=") {
            range = Int(l.dropFirst("range: bytes=".count).split(separator: "-").first ?? "")
        }
        lock.lock(); requests.append("\(lines[0]) range=\(range.map(String.init) ?? "-")"); lock.unlock()
        guard path.count == 2, let file = files[path[1]], var body = FileManager.default.contents(atPath: file) else {
            send(c, Data("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".utf8))
            return
        }
        let mode = path[0]
        if mode == "corrupt" { body[body.count / 2] ^= 0xFF }
        if (mode == "range" || mode == "cut"), let start = range, start <= body.count {
            if start == body.count {
                send(c, Data("HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */\(body.count)\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".utf8))
                return
            }
            let part = body.subdata(in: start..<body.count)
            send(c, Data("HTTP/1.1 206 Partial Content\r\nContent-Length: \(part.count)\r\nContent-Range: bytes \(start)-\(body.count - 1)/\(body.count)\r\nConnection: close\r\n\r\n".utf8))
            send(c, part)
            return
        }
        send(c, Data("HTTP/1.1 200 OK\r\nContent-Length: \(body.count)\r\nAccept-Ranges: \(mode == "norange" ? "none" : "bytes")\r\nConnection: close\r\n\r\n".utf8))
        send(c, mode == "cut" ? body.subdata(in: 0..<(body.count / 2)) : body)
    }
}
