export { AgentClient, CONNECT_TIMEOUT_MS, healthCheck, RpcError } from "./client.ts";
export type { RemoteCall, RpcErrorKind } from "./client.ts";
export { CHUNK_BYTES, PROTOCOL_VERSION } from "./messages.ts";
export type {
  LogLine,
  PingResponse,
  RunTaskRequest,
  RunTaskResponse,
  TaskResultMessage,
  TaskStart,
  WireEntry,
} from "./messages.ts";
export { ProtocolError, serveAgent } from "./server.ts";
export type { AgentHandlers, AgentServer, IncomingJob, ServeOptions } from "./server.ts";
export { checkMasterTls, checkServerTls, TlsConfigError } from "./tls.ts";
export type { ServerTlsFiles, TlsFiles } from "./tls.ts";
export {
  isLoopbackHost,
  localTokenDir,
  localTokenPath,
  newToken,
  readLocalToken,
  writeLocalToken,
} from "./local_token.ts";
