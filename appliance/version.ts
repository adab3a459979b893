// The software version the register reports to the ledger (its retained status) and the fleet page.
// Kept equal to package.json's by a test; a constant, so a bundled or compiled daemon needs no file.
export const VERSION = '0.1.0';
