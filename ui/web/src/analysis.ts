// Words for analysis findings (warnings): config meshlens accepts, as Istio does, that `istioctl analyze`
// would report.

/** codeTitle is istioctl analyze's name for a code, or the code itself. */
export function codeTitle(code: string): string {
  const names: Record<string, string> = {
    IST0101: 'ReferencedResourceNotFound',
    IST0109: 'ConflictingMeshGatewayVirtualServiceHosts',
    IST0133: 'SchemaWarning',
    IST0174: 'UnknownDestinationRuleHost',
  };
  return names[code] ?? code;
}

/** applyStatus says what an accepted apply or dry run did, and that its warnings did not stop it. */
export function applyStatus(dryRun: boolean, warningCount: number): { kind: 'ok' | 'warn'; text: string } {
  const done = dryRun ? 'Valid: applying it would be accepted.' : 'Applied. The objects are persisted and pushed to connected proxies.';
  if (!warningCount) return { kind: 'ok', text: done };
  const n = `${warningCount} analysis warning${warningCount > 1 ? 's' : ''}`;
  return {
    kind: 'warn',
    text: `${done} ${n}, as istioctl analyze would report them: they do not stop the change, but requests the findings name may fail (503 / UNAVAILABLE) until the objects they refer to exist.`,
  };
}
