// Small display helpers shared by the pages.

/** A timestamp in the reader's locale, or a dash. */
export function when(value: string | null | undefined): string {
  if (!value) return "—";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? value : date.toLocaleString();
}
