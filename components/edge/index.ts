export { CLIENT_NAME_HEADER, EDGE_DIR, EDGE_TLS_CONTAINER_PORT, edgeConfig, type EdgeConfig, type EdgeTls } from "./render";
export { renderEdgeSecrets, type EdgeSecretValues } from "./secrets";
export { edgeInstallCommand, edgeLabels, edgePorts, edgeScheme, edgeSecretBundle, subjectAltNames, type EdgeTarget } from "./wiring";
