export { FleetMonitoring, type FleetMonitoringArgs } from "./fleetMonitoring";
export { GrafanaServer, type GrafanaServerArgs } from "./grafanaServer";
export { MonitoringImage, type MonitoringImageArgs } from "./monitoringImage";
export { NginxExporter, type NginxExporterArgs } from "./nginxExporter";
export { PrometheusServer, type PrometheusServerArgs } from "./prometheusServer";
export type { MonitoringSettings } from "./settings";
