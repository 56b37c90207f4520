import { DataFrame, DataFrameJSON, dataFrameFromJSON } from '@grafana/data';

/** The JSON part of a golden file (experimental.CheckGoldenJSONResponse): what follows its second marker line. */
export function goldenFrames(jsonc: string): DataFrame[] {
  const parts = jsonc.split(/^\/\/ {2}🌟 This was machine generated\.  Do not edit\. 🌟$/m);
  const body = JSON.parse(parts[parts.length - 1]) as { frames: DataFrameJSON[] };
  return body.frames.map((f) => dataFrameFromJSON(f));
}
