// Node `ws` echo server for tools/bench/bench_ws_compare.sh (issue 5).
// usage: node echo_server.js PORT   -- prints READY once listening.
'use strict';
const { WebSocketServer } = require('ws');
const port = Number(process.argv[2] || 0);
const wss = new WebSocketServer({ host: '127.0.0.1', port, path: '/ws', perMessageDeflate: false });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
wss.on('listening', () => console.log('READY'));
const stop = () => { for (const c of wss.clients) c.terminate(); wss.close(() => process.exit(0)); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
