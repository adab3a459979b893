// The sync suite end to end on the scale path: Mosquitto (127.0.0.1:1883, shared with other suites) and
// PostgreSQL (a fresh schema per case), two ledger consumers on a shared subscription
// (test/sync/sync-cases.ts). One file, cases in turn: every ledger joins the `$share/ledger` group, so
// two of ours at once would split each other's devices.
import t from 'tap';
import { syncSuite } from './sync-cases.js';

syncSuite(t, 'mosquitto-postgres');
