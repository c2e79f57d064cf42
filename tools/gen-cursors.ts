// npm run gen:cursors: writes src/phyr/cursors.generated.ts from the one walk template in
// src/phyr/cursor.gen.ts (the template is plain string building; writing the file is Node's job and
// lives here, outside the library). src/phyr/cursor.test.ts checks the checked-in file is current.
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { generateCursors } from '../src/phyr/cursor.gen.ts';

const target = fileURLToPath(new URL('../src/phyr/cursors.generated.ts', import.meta.url));
writeFileSync(target, generateCursors());
console.log(`wrote ${target}`);
