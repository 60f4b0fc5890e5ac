// Entry of the dashboard page's bundle (gateway/assets/ws-client.js): the same
// WebSocketService, exposed as the global `WebSocketService` for a plain <script defer>.
import { WebSocketService } from './service.js';

(globalThis as unknown as { WebSocketService: typeof WebSocketService }).WebSocketService = WebSocketService;
