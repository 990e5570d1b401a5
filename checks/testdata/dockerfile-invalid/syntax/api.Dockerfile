FROM node:22-alpine
WORKDIR /app
FORM node:22-alpine
CMD ["node", "index.js"]
