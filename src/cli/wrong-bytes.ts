// Every report row moves real bytes through its mapping and checks them, so a row that reads back
// other bytes than were written is a defect in the model, not a figure. The report is printed all
// the same (its rows mark the place: "B WRONG", "BYTES WRONG"), then the command exits 1 with the
// rows on stderr, so that a script running the report notices.
import { CommanderError } from 'commander';

/** Exit code of a report with a row that read back wrong bytes (as `phyr run`'s unmet step). */
export const EXIT_WRONG_BYTES = 1;

/** Names the rows on stderr and exits 1 when there are any; does nothing otherwise. */
export function exitOnWrongBytes(command: string, wrong: readonly string[], err: (s: string) => void): void {
  if (wrong.length === 0) return;
  const what = wrong.length === 1 ? 'one row' : `${wrong.length} rows`;
  err(`phyr ${command}: ${what} read back wrong bytes through the mapping (a defect in the model):\n${wrong.map((w) => `  ${w}\n`).join('')}`);
  throw new CommanderError(EXIT_WRONG_BYTES, 'phyr.exit', '');
}
