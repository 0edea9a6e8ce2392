export { CLIENT_NAME_HEADER, EDGE_DIR, EDGE_TLS_CONTAINER_PORT, edgeConfig, type EdgeConfig, type EdgeTls } from "./render";
export { renderEdgeSecrets, type EdgeSecretValues } from "./secrets";
export { OPEN_EDGE_SETTINGS, emptyEdgeBundle, edgeInstallCommand, edgeLabels, edgeRenewCommand, edgePorts, edgeScheme, edgeSecretBundle, subjectAltNames } from "./wiring";
