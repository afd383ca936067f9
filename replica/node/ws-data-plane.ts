// The replica's WebSocket data plane on Node: accepts upgrades on the HTTP server's port, decodes
// frames, hands each message to the ReplicaService and coalesces replies into one frame per tick.
// A garbage frame, a text frame or a malformed envelope gets an `error` reply; the connection and
// its other requests go on. Frames over the limit are refused by `ws` itself (close 1009).

import type { Server } from 'node:http'
import { WebSocketServer, type WebSocket } from 'ws'
import { limits } from '../../coordinator/limits.ts'
import { decodeFrame } from '../../coordinator/protocol/codec.ts'
import { FrameBatcher } from '../../coordinator/protocol/frame-batcher.ts'
import type { ReplicaService } from '../replica-service.ts'

export function attachDataPlane(server: Server, service: ReplicaService): WebSocketServer {
  const wss = new WebSocketServer({ noServer: true, maxPayload: limits.frameBytesMax, perMessageDeflate: false })
  server.on('upgrade', (req, socket, head) => {
    wss.handleUpgrade(req, socket, head, ws => wss.emit('connection', ws, req))
  })
  wss.on('connection', (ws: WebSocket) => {
    const batcher = new FrameBatcher(frame => { service.counters.framesOut++; if (ws.readyState === ws.OPEN) ws.send(frame) }, setImmediate)
    const reply = (m: readonly [string, number, unknown], approxBytes?: number) => batcher.push(m, approxBytes)
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      service.counters.framesIn++
      if (!isBinary) {
        service.bad(0, 'text frames are not part of the protocol: send msgpack binary frames', reply)
        return
      }
      let messages
      try {
        messages = decodeFrame(data)
      } catch (e) {
        service.bad(0, (e as Error).message, reply)
        return
      }
      for (const m of messages) {
        if ('bad' in m) service.bad(m.id, m.bad, reply)
        else service.handle(m[0], m[1], m[2], reply)
      }
    })
    ws.on('error', () => { /* the close event follows; nothing is pending on the server side */ })
  })
  return wss
}
