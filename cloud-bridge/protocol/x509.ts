// X.509 requests and certificates for enrolment (./enrol.ts), built with @peculiar/x509 on Node's
// WebCrypto: node:crypto reads certificates but can neither make a request nor sign a certificate
// (decision 0011). The library needs a Reflect metadata polyfill, imported here first; everything
// else imports X.509 through this module.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto);

export { x509 };
