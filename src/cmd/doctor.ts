// `tote doctor` (built in a later step of issue #7).
export async function runDoctor(_argv: string[]): Promise<number> {
  process.stderr.write('tote doctor is not built yet\n');
  return 2;
}
