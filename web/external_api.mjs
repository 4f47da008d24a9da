// ES module face of external_api.js: `import { SamtalMeeting } from 'https://meet.example.org/external_api.mjs'`.
// It loads the classic script (which defines globalThis.SamtalMeeting) and re-exports it.
import './external_api.js';

export const SamtalMeeting = globalThis.SamtalMeeting;
export default SamtalMeeting;
