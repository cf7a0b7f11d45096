export { AgentClient, CONNECT_TIMEOUT_MS, healthCheck, RpcError } from "./client.ts";
export type { RemoteCall, RpcErrorKind } from "./client.ts";
export { CHUNK_BYTES, OLDEST_PROTOCOL, parseRequirements, PROTOCOL_VERSION } from "./messages.ts";
export type {
  LogLine,
  PingResponse,
  RunTaskRequest,
  RunTaskResponse,
  TaskResultMessage,
  TaskStart,
  WireEntry,
} from "./messages.ts";
export { serveAgent } from "./server.ts";
export type { AgentServer, ServeOptions } from "./server.ts";
export { ProtocolError } from "./handlers.ts";
export type { AgentHandlers, IncomingJob } from "./handlers.ts";
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
